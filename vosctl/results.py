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


# The two speed figures, defined once; the segment job's --json summary, `vosctl benchmark` and
# benchmarks/ all report these.
FPS_DEFINITION = (
    "fps = frames / wall-clock seconds end to end (decode + segment + write, model loading excluded); "
    "segment_fps = frames / seconds inside the segmenter (decode and write excluded)"
)


def rate(frames: int, seconds: float) -> float | None:
    """Frames per second, or None when nothing was timed."""
    return frames / seconds if seconds > 0 else None


@dataclass
class Timing:
    """Where one run's time went; :data:`FPS_DEFINITION` says what the two rates mean."""

    frames: int = 0
    total_seconds: float = 0.0  # end to end: decode + segment + write
    decode_seconds: float = 0.0  # reading and decoding frames
    segment_seconds: float = 0.0  # inside the segmenter, decode excluded

    @property
    def fps(self) -> float | None:
        return rate(self.frames, self.total_seconds)

    @property
    def segment_fps(self) -> float | None:
        return rate(self.frames, self.segment_seconds)

    @property
    def decode_fps(self) -> float | None:
        return rate(self.frames, self.decode_seconds)

    def add_segment(self, seconds_in_tracker: float, decode_seconds: float) -> None:
        """Time spent in the tracker's generator, from which the frame pulls (decode) are taken out."""
        self.segment_seconds += max(seconds_in_tracker - decode_seconds, 0.0)
        self.decode_seconds += decode_seconds
