"""Per-frame results of the tracker: plain data, importable without torch (sinks, tests, tools)."""

from __future__ import annotations

from dataclasses import dataclass

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
    index: int
    labels: np.ndarray  # uint8 (H, W)
    objects: dict[int, ObjectResult]
