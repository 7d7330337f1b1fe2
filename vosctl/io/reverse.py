"""Reading a video backwards, frame by frame, with bounded memory.

``read_backward(source, start)`` yields ``Frame(start), Frame(start - 1), ..., Frame(stop)`` with
the same indices, timestamps and pixels as forward iteration of the same source. A folder of
frames is read file by file in reverse. A video file cannot be decoded backwards, so it is
decoded in chunks: one pass over the packets (no decoding) lists every frame's presentation
timestamp and the keyframes; then, from the end, each chunk is decoded by seeking to the keyframe
at or before it, converting only the chunk's frames to RGB, and emitting them reversed. A chunk
holds at most ``chunk_bytes`` of RGB frames (48 MiB by default), so memory does not grow with the
video's length or its keyframe interval; a keyframe interval longer than a chunk costs extra
decoding instead (the interval is decoded once per chunk it holds).

A stream whose packets lack timestamps cannot be seeked reliably; it is then read forwards from
the start for every chunk: slower, the same frames, the same memory bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vosctl.errors import InputError
from vosctl.io.video import Frame, FrameFolderSource, FrameSource, _read_image, open_video, rotate_upright

DEFAULT_CHUNK_BYTES = 48 * 2**20
"""RGB bytes of decoded frames one backward chunk may hold."""
REORDER_SLACK = 32
"""Frames decoded past a chunk's end before giving up on a missing one (B-frame reordering depth)."""


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame (``pts[i]`` is frame ``i``) and the keyframes' indices."""

    pts: np.ndarray  # int64, ascending
    keyframes: np.ndarray  # int64 frame indices, ascending

    def __len__(self) -> int:
        return len(self.pts)

    def keyframe_at_or_before(self, index: int) -> int:
        position = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[position]) if position >= 0 else 0


def index_video(path: str | Path) -> FrameIndex | None:
    """Scan the packets of the first video stream (no decoding); ``None`` when timestamps are unusable."""
    import av

    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            pts: list[int] = []
            keys: list[int] = []
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                if packet.pts is None:
                    return None
                pts.append(int(packet.pts))
                if packet.is_keyframe:
                    keys.append(int(packet.pts))
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"cannot read video {path}: {error}") from None
    ordered = np.sort(np.asarray(pts, np.int64))
    if len(ordered) == 0 or not keys or np.any(np.diff(ordered) == 0):
        return None
    keyframes = np.searchsorted(ordered, np.asarray(sorted(keys), np.int64))
    return FrameIndex(ordered, keyframes.astype(np.int64))


def frame_count(source: FrameSource) -> int:
    """The exact number of frames (a packet scan for video files whose header only estimates it)."""
    if source.frame_count_exact and source.frame_count is not None:
        return int(source.frame_count)
    index = index_video(source.path)
    if index is not None:
        return len(index)
    return sum(1 for _ in open_video(source.path))


def reopen(source: FrameSource, start_frame: int = 0) -> FrameSource:
    """A second, independent reader of the same input (its own file handles), from ``start_frame``."""
    if isinstance(source, FrameFolderSource):
        return FrameFolderSource(source.path, fps=source.fps, start_frame=start_frame)
    return open_video(source.path, start_frame=start_frame)


def read_backward(
    source: FrameSource, start: int, stop: int = 0, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Frame]:
    """Frames ``start, start - 1, ..., stop`` (inclusive) of ``source``, read with bounded memory.

    ``start`` past the last frame starts at the last frame. The source's own iteration is not
    disturbed: video files are opened again.
    """
    if start < stop or stop < 0:
        return
    if isinstance(source, FrameFolderSource):
        yield from _folder_backward(source, start, stop)
        return
    per_chunk = max(1, chunk_bytes // max(1, source.width * source.height * 3))
    index = index_video(source.path)
    if index is None:
        yield from _rescan_backward(source, start, stop, per_chunk)
        return
    yield from _seek_backward(source, index, min(start, len(index) - 1), stop, per_chunk)


def _folder_backward(source: FrameFolderSource, start: int, stop: int) -> Iterator[Frame]:
    for index in range(min(start, len(source.files) - 1), stop - 1, -1):
        rgb = _read_image(source.files[index])
        if rgb.shape[:2] != (source.height, source.width):
            raise InputError(
                f"frame {source.files[index]} is {rgb.shape[1]}x{rgb.shape[0]} "
                f"but the first frame is {source.width}x{source.height}"
            )
        yield Frame(index, index / source.fps, rgb)


def _seek_backward(source: FrameSource, index: FrameIndex, start: int, stop: int, per_chunk: int) -> Iterator[Frame]:
    import av

    try:
        container = av.open(str(source.path), "r")
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"cannot read video {source.path}: {error}") from None
    try:
        stream = container.streams.video[0]
        start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        high = start + 1  # exclusive end of the next chunk
        while high > stop:
            # A chunk never crosses a keyframe going down, so decoding starts at most one
            # keyframe interval before it.
            low = max(index.keyframe_at_or_before(high - 1), high - per_chunk, stop)
            chunk = _decode_range(container, stream, index, low, high, source, start_time)
            yield from reversed(chunk)
            chunk.clear()
            high = low
    finally:
        container.close()


def _decode_range(
    container: Any, stream: Any, index: FrameIndex, low: int, high: int, source: FrameSource, start_time: float
) -> list[Frame]:
    """Frames ``low .. high - 1``: seek to the keyframe at or before ``low``, decode forwards."""
    import av

    keyframe = index.keyframe_at_or_before(low)
    found: dict[int, Frame] = {}
    try:
        container.seek(int(index.pts[keyframe]), stream=stream, backward=True, any_frame=False)
        for decoded in container.decode(stream):
            if decoded.pts is None:
                continue
            i = int(np.searchsorted(index.pts, decoded.pts))
            if i >= len(index) or index.pts[i] != decoded.pts:
                continue
            if low <= i < high and i not in found:
                # Only the chunk's frames are converted: the lead-in from the keyframe is just decoded.
                rgb = rotate_upright(decoded.to_ndarray(format="rgb24"), source.rotation)
                time = decoded.time
                timestamp = time - start_time if time is not None else i / source.fps
                found[i] = Frame(i, timestamp, rgb)
                if len(found) == high - low:
                    break
            elif i >= high + REORDER_SLACK:
                break
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"cannot decode video {source.path} near frame {low}: {error}") from None
    if len(found) != high - low:
        missing = next(i for i in range(low, high) if i not in found)
        raise InputError(f"cannot decode video {source.path} backwards: frame {missing} not found after seeking")
    return [found[i] for i in range(low, high)]


def _rescan_backward(source: FrameSource, start: int, stop: int, per_chunk: int) -> Iterator[Frame]:
    """No usable timestamps: read forwards from the start for each chunk (slow, bounded memory)."""
    high = start + 1
    while high > stop:
        low = max(high - per_chunk, stop)
        chunk: list[Frame] = []
        reader = open_video(source.path, start_frame=low)
        try:
            for frame in reader:
                if frame.index >= high:
                    break
                chunk.append(frame)
        finally:
            reader.close()
        if not chunk:  # start was past the end
            high = low
            continue
        for frame in reversed(chunk):
            yield frame
        high = low
