"""Streaming frame readers: video files (anything PyAV/FFmpeg decodes) and folders of frames.

``open_video(path)`` returns a :class:`FrameSource`; iterating it yields one :class:`Frame` at a
time, so memory use does not depend on the video's length. Frames are upright RGB ``uint8``
``H x W x 3`` C-contiguous arrays: the container's rotation (display matrix, as phones write it)
is applied, and ``width``/``height`` are the upright size.

PyAV is imported inside the functions that need it so that ``import vosctl.io`` stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from vosctl.errors import InputError
from vosctl.threads import codec_threads

FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_FOLDER_FPS = 25.0
"""Frame rate reported for a folder of frames (it has none of its own) unless ``fps=`` is given."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``timestamp`` is in seconds from the start of the video."""

    index: int
    timestamp: float
    rgb: np.ndarray


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value: ``frame2`` < ``frame10``."""
    # re.split with a capture group alternates text, number, text, ...: the types line up
    # position by position, so tuples of two names always compare.
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(parts))


def rotate_upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a frame clockwise by ``rotation`` degrees (0, 90, 180 or 270); C-contiguous result."""
    if rotation == 90:
        return cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    if rotation == 180:
        return cv2.rotate(rgb, cv2.ROTATE_180)
    if rotation == 270:
        return cv2.rotate(rgb, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return np.ascontiguousarray(rgb)


def clockwise_rotation(display_rotation: float | None, rotate_tag: str | None = None) -> int:
    """The clockwise turn (0/90/180/270) that makes a stream upright.

    ``display_rotation`` is PyAV's ``VideoFrame.rotation``: the display matrix angle, which is
    counter-clockwise (FFmpeg's convention), so a phone's portrait video reads -90 and needs a 90
    degree clockwise turn. ``rotate_tag`` is the legacy ``rotate`` stream tag, already clockwise;
    it is used only when there is no display matrix. Odd angles are snapped to quarter turns.
    """
    if display_rotation:
        return int(-round(float(display_rotation) / 90.0) * 90) % 360
    if rotate_tag:
        try:
            return int(round(float(rotate_tag) / 90.0) * 90) % 360
        except ValueError:
            return 0
    return 0


class FrameSource:
    """A readable video: metadata plus an iterator over upright frames.

    Attributes: ``path``, ``fps`` (float), ``width``/``height`` (after rotation), ``frame_count``
    (``None`` when unknown; see ``frame_count_exact``), ``rotation`` (clockwise degrees already
    applied to the frames). Frames with ``index < start_frame`` are skipped without being
    converted to RGB (video files still have to decode them: seeking is not frame-accurate).
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int | None
    frame_count_exact: bool
    rotation: int
    start_frame: int

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handles (iteration after ``close`` reopens the input)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {self.width}x{self.height}, {self.fps:g} fps, "
            f"frames={self.frame_count}, rotation={self.rotation})"
        )


class VideoFileSource(FrameSource):
    """A video file decoded with PyAV, one frame at a time."""

    def __init__(self, path: Path, start_frame: int = 0) -> None:
        self.path = path
        self.start_frame = start_frame
        self._container: Any = None
        self._first: Any = None  # the frame decoded at open time, handed out by the first iteration
        self._decoder: Iterator[Any] | None = None
        self._open()
        first = self._first
        stream = self._container.streams.video[0]
        self.rotation = clockwise_rotation(getattr(first, "rotation", 0), stream.metadata.get("rotate"))
        coded_w, coded_h = int(first.width), int(first.height)
        self.width, self.height = (coded_h, coded_w) if self.rotation in (90, 270) else (coded_w, coded_h)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else DEFAULT_FOLDER_FPS
        self.frame_count, self.frame_count_exact = self._count_frames(stream)
        self._start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path), "r")
        except (av.FFmpegError, OSError) as error:
            raise InputError(f"cannot read video {self.path}: {_reason(error)}") from None
        if not self._container.streams.video:
            self.close()
            raise InputError(f"input {self.path} has no video stream")
        stream = self._container.streams.video[0]
        # thread_type stays at PyAV's default: AUTO frame threading was slower on 2-core machines.
        # The count follows the process's thread policy (vosctl.threads), so runs side by side share cores.
        threads = codec_threads()
        if threads is not None:
            stream.codec_context.thread_count = threads
        self._decoder = self._container.decode(stream)
        try:
            self._first = next(self._decoder)
        except StopIteration:
            self.close()
            raise InputError(f"input {self.path} has no video frames") from None
        except (av.FFmpegError, OSError) as error:
            self.close()
            raise InputError(f"cannot decode video {self.path}: {_reason(error)}") from None

    def _count_frames(self, stream: Any) -> tuple[int | None, bool]:
        if stream.frames:  # mp4/mov/avi headers carry the exact count
            return int(stream.frames), True
        # Matroska/WebM carry only a duration: estimate, and say it is an estimate.
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / 1_000_000
        else:
            seconds = _duration_tag(stream.metadata.get("DURATION"))
        if seconds is None or seconds <= 0:
            return None, False
        return max(1, round(seconds * self.fps)), False

    def __iter__(self) -> Iterator[Frame]:
        import av

        if self._first is None:  # already iterated (or closed): start over from the beginning
            self.close()
            self._open()
        pending, self._first = self._first, None
        decoder = self._decoder
        assert decoder is not None
        index = 0
        while True:
            if pending is None:
                try:
                    pending = next(decoder)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as error:
                    raise InputError(f"cannot decode video {self.path} at frame {index}: {_reason(error)}") from None
            frame, pending = pending, None
            if index >= self.start_frame:
                rgb = rotate_upright(frame.to_ndarray(format="rgb24"), self.rotation)
                time = frame.time
                timestamp = time - self._start_time if time is not None else index / self.fps
                yield Frame(index, timestamp, rgb)
            index += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._decoder = None
        self._first = None


class FrameFolderSource(FrameSource):
    """A folder of jpg/jpeg/png frames in natural order (``frame2`` before ``frame10``)."""

    def __init__(self, path: Path, fps: float | None = None, start_frame: int = 0) -> None:
        self.path = path
        self.start_frame = start_frame
        try:
            names = [
                entry.name
                for entry in os.scandir(path)
                if entry.is_file()
                and not entry.name.startswith(".")
                and os.path.splitext(entry.name)[1].lower() in FRAME_EXTENSIONS
            ]
        except OSError as error:
            raise InputError(f"cannot list frame folder {path}: {_reason(error)}") from None
        if not names:
            raise InputError(f"frame folder {path} has no .jpg/.jpeg/.png frames")
        self.files = [path / name for name in sorted(names, key=natural_key)]
        first = _read_image(self.files[0])
        self.height, self.width = first.shape[:2]
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.frame_count = len(self.files)
        self.frame_count_exact = True
        # cv2.imdecode already applies a JPEG's EXIF orientation, so there is nothing left to turn.
        self.rotation = 0

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self.start_frame, len(self.files)):
            file = self.files[index]
            rgb = _read_image(file)
            if rgb.shape[:2] != (self.height, self.width):
                raise InputError(
                    f"frame {file} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame is {self.width}x{self.height}"
                )
            yield Frame(index, index / self.fps, rgb)


def open_video(path: str | os.PathLike[str], start_frame: int = 0, fps: float | None = None) -> FrameSource:
    """Open a video file or a folder of frames for streaming.

    ``start_frame``: frames before it are skipped (their indices are kept: the first frame yielded
    has ``index == start_frame``). ``fps`` sets the rate of a frame folder (default 25); it is
    ignored for video files, which carry their own. Raises :class:`InputError` for a missing path,
    an unreadable or undecodable file, or a folder without frames.
    """
    if start_frame < 0:
        raise InputError(f"start frame must be >= 0, got {start_frame}")
    source = Path(path)
    if not source.exists():
        raise InputError(f"input {source} does not exist")
    if source.is_dir():
        return FrameFolderSource(source, fps=fps, start_frame=start_frame)
    return VideoFileSource(source, start_frame=start_frame)


def _read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 (grayscale and 16-bit images are converted)."""
    try:
        # fromfile + imdecode instead of imread: imread silently returns None for many failures
        # and cannot open some non-ASCII paths; this way every failure has a reason.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise InputError(f"cannot read frame {path}: {_reason(error)}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB) if data.size else None
    if image is None:
        raise InputError(f"cannot decode frame {path} (not a valid jpg/png image)")
    return image


def _duration_tag(text: str | None) -> float | None:
    """Parse Matroska's ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``) into seconds."""
    if not text:
        return None
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _reason(error: BaseException) -> str:
    """A short reason for a one-line message, without PyAV's repeated file name and errno."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(reason).rstrip(".")
