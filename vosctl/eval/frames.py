"""Where two benchmark runs part, frame by frame (the ``per_frame`` curves of ``vosctl benchmark --json``).

A mean over a sequence hides how it moved: a candidate that makes a tighter mask on every frame and
one that follows the wrong object from frame 51 on can lose the same J&F. J-Recall counts frames
above J 0.5, so it moves only where a frame crosses 0.5. For each sequence both runs scored, this
finds the frames that crossed 0.5 either way, the frames just below it (what a small change of the
mask would tip), and the frame from which the candidate falls and stays behind (a switch to another
object, a lost target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vosctl.errors import InputError

RECALL_THRESHOLD = 0.5  # J-Recall counts frames with J > 0.5 (davis2017-evaluation)
Curves = dict[str, tuple[int, np.ndarray]]  # row -> (first frame, J per scored frame)


@dataclass(frozen=True)
class SequenceFrames:
    """One sequence (row) of two runs compared frame by frame (frame numbers in the video)."""

    name: str
    frames: int  # scored frames
    base_above: int  # frames with J > 0.5
    candidate_above: int
    gained: list[int]  # frames above 0.5 for the candidate only
    lost: list[int]  # frames above 0.5 for the base only
    base_near: int  # frames with J in (0.5 - near, 0.5]: a small change of the mask tips them
    candidate_near: int
    falls_behind_at: int | None  # first frame of the first run of >= `run` frames >= `drop` below the base

    @property
    def recall_difference(self) -> float:
        return (self.candidate_above - self.base_above) / self.frames if self.frames else 0.0


def per_frame_j(report: dict[str, Any], side: str) -> Curves:
    """Each row's (first frame, J per scored frame) from a benchmark JSON; NaN where it held null."""
    curves = report.get("per_frame")
    if not isinstance(curves, dict) or not curves:
        raise InputError(f"the {side} JSON has no per-frame curves (written by vosctl benchmark since round 24)")
    out = {}
    for name, row in curves.items():
        try:
            values = np.array([np.nan if v is None else float(v) for v in row["J"]], dtype=np.float64)
            out[name] = (int(row.get("first_frame", 1)), values)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"the {side} JSON's per-frame curve of {name!r} is malformed") from None
    return out


def _first_run(mask: np.ndarray, length: int) -> int | None:
    """Index of the first run of at least ``length`` consecutive True values, or None."""
    count = 0
    for index, flag in enumerate(mask.tolist()):
        count = count + 1 if flag else 0
        if count >= length:
            return index - length + 1
    return None


def compare_sequence_frames(
    name: str, first_frame: int, base: np.ndarray, candidate: np.ndarray, drop: float, run: int, near: float
) -> SequenceFrames:
    if base.shape != candidate.shape:
        raise InputError(f"{name!r}: the runs scored different frames ({base.size} and {candidate.size})")
    above_b = base > RECALL_THRESHOLD  # NaN compares False, as in the recall itself
    above_c = candidate > RECALL_THRESHOLD
    frame = np.arange(base.size) + first_frame
    behind = candidate <= base - drop
    start = _first_run(behind, run)
    return SequenceFrames(
        name=name,
        frames=int(base.size),
        base_above=int(above_b.sum()),
        candidate_above=int(above_c.sum()),
        gained=frame[above_c & ~above_b].tolist(),
        lost=frame[above_b & ~above_c].tolist(),
        base_near=int(((base > RECALL_THRESHOLD - near) & ~above_b).sum()),
        candidate_near=int(((candidate > RECALL_THRESHOLD - near) & ~above_c).sum()),
        falls_behind_at=None if start is None else int(frame[start]),
    )


def compare_frames(
    base: dict[str, Any], candidate: dict[str, Any], drop: float = 0.2, run: int = 5, near: float = 0.1
) -> list[SequenceFrames]:
    """Every row both runs scored, in the base's order (two benchmark JSON documents)."""
    return compare_curves(per_frame_j(base, "base"), per_frame_j(candidate, "candidate"), drop, run, near)


def compare_curves(
    base_curves: Curves, candidate_curves: Curves, drop: float = 0.2, run: int = 5, near: float = 0.1
) -> list[SequenceFrames]:
    """:func:`compare_frames` on curves already read (a caller that also prints them reads them once)."""
    common = [name for name in base_curves if name in candidate_curves]
    if not common:
        raise InputError("the two runs share no sequence")
    rows = []
    for name in common:
        first_frame, base_j = base_curves[name]
        rows.append(compare_sequence_frames(name, first_frame, base_j, candidate_curves[name][1], drop, run, near))
    return rows
