"""Per-frame results of the tracker: plain data, importable without torch (sinks, tests, tools)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ObjectResult:
    object_id: int
    box: tuple[int, int, int, int] | None  # x, y, w, h of the mask; None when empty
    area: int
    score: float
    lost: bool


@dataclass
class FrameResult:
    index: int  # the input frame number
    labels: np.ndarray  # uint8 (H, W)
    objects: dict[int, ObjectResult]
    prompted: tuple[int, ...] = ()  # ids whose mask on this frame is the user's prompt
    direction: str = "forward"  # the pass that produced it: "forward" or "backward"
    timestamp: float | None = None  # seconds, when the input frame carried one (vosctl.io.Frame)
    frame: Any = None  # the input Frame itself, when track() was given Frames or a video source
