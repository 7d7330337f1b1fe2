"""Hand a run's results to the sinks in input frame order, whatever order the passes produced them.

A backward pass yields frames from the start frame down to 0, but an overlay video, an alpha
matte and ``track.json`` are written front to back. The backward results are therefore spilled
to a folder (one lossless label PNG per frame, a few KB each; the per-object records stay in
memory) and replayed in frame order, with the frames decoded again by a second reader, as soon as
the first forward result arrives (or the run ends). Memory stays bounded by one frame and one
decoding chunk, whatever the length of the video.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vosctl.errors import VosctlError
from vosctl.io.reverse import reopen
from vosctl.io.video import Frame, FrameSource
from vosctl.results import FrameResult


def in_frame_order(
    results: Iterable[FrameResult], source: FrameSource, spill_dir: Path
) -> Iterator[tuple[Frame, FrameResult]]:
    """``(frame, result)`` pairs in increasing frame number; ``results`` carry their ``frame``."""
    spilled: dict[int, FrameResult] = {}
    try:
        for result in results:
            if result.direction == "backward":
                if not spilled:
                    spill_dir.mkdir(parents=True, exist_ok=True)
                _write_labels(spill_dir / f"{result.index}.png", result.labels)
                spilled[result.index] = replace(result, labels=np.empty((0, 0), np.uint8), frame=None)
                continue
            if spilled:
                yield from _replay(spilled, source, spill_dir)
                spilled.clear()
            yield result.frame, result
        if spilled:
            yield from _replay(spilled, source, spill_dir)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _replay(
    spilled: dict[int, FrameResult], source: FrameSource, spill_dir: Path
) -> Iterator[tuple[Frame, FrameResult]]:
    first, last = min(spilled), max(spilled)
    with reopen(source, start_frame=first) as reader:
        for frame in reader:
            if frame.index > last:
                break
            result = spilled.get(frame.index)
            if result is None:
                continue
            path = spill_dir / f"{frame.index}.png"
            labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            path.unlink()
            yield frame, replace(result, labels=labels, frame=frame)
            del spilled[frame.index]
    if spilled:  # the second reading ended early: the file changed under us
        raise VosctlError(f"input {source.path} ended at frame {min(spilled) - 1} when read again")


def _write_labels(path: Path, labels: np.ndarray) -> None:
    # Compression level 1: label maps compress well anyway, and this is on the per-frame path.
    if not cv2.imwrite(str(path), labels, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {path}")
