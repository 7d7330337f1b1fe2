"""Streaming output sinks: one ``write`` per frame, nothing buffered beyond the encoder's needs.

Every sink has the same small interface::

    sink.write(index, rgb, labels, objects)   # once per frame, in order
    sink.close()                              # flush and commit (rename into place)
    sink.abort()                              # remove the temporaries

and is a context manager that commits on success and aborts on an exception. Outputs are written
through :mod:`vosctl.io.atomic`, so a failed or interrupted run leaves no partial file.

``labels`` is the frame's ``uint8`` label map (0 = background, ids kept), ``objects`` maps each
object id to an :class:`ObjectResultLike` (the tracker's ``ObjectResult``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from vosctl.io.atomic import AtomicPath
from vosctl.io.palette import DAVIS_PALETTE, DAVIS_PALETTE_BYTES
from vosctl.threads import codec_threads

PathLike = str | os.PathLike[str]


@runtime_checkable
class ObjectResultLike(Protocol):
    """What a sink reads of one object in one frame (the tracker's ``ObjectResult`` has these)."""

    @property
    def object_id(self) -> int: ...

    @property
    def box(self) -> tuple[float, float, float, float] | None: ...  # x, y, w, h in pixels

    @property
    def area(self) -> int: ...  # mask pixels

    @property
    def score(self) -> float: ...

    @property
    def lost(self) -> bool: ...


Objects = Mapping[int, ObjectResultLike]


class Sink:
    """Base class: context-manager behaviour around ``write``/``close``/``abort``."""

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _rate(fps: float) -> Fraction:
    """The stream rate as a fraction: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    if not fps or fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _check_frame(sink: str, rgb: np.ndarray | None, labels: np.ndarray, width: int, height: int) -> None:
    if labels.shape != (height, width) or (rgb is not None and rgb.shape[:2] != (height, width)):
        raise ValueError(
            f"{sink}: frame is {labels.shape[1]}x{labels.shape[0]} but the sink was opened for {width}x{height}"
        )


class _VideoWriter:
    """A PyAV encoder writing to an atomic temporary, frame by frame.

    The container format is given explicitly because the temporary's name (``.x.mp4.tmp-123``)
    hides the extension FFmpeg would otherwise guess it from.
    """

    def __init__(
        self,
        path: PathLike,
        container_format: str,
        codec: str,
        pix_fmt: str,
        fps: float,
        width: int,
        height: int,
        options: dict[str, str],
        align: tuple[int, int] = (1, 1),
        profile: str | None = None,
    ) -> None:
        import av

        self.rate = _rate(fps)
        self.time_base = 1 / self.rate
        # Some encoders need sizes that are multiples of ``align`` (width, height): 4:2:0 H.264
        # needs even sizes, prores_aw an even width. Pad the last columns/rows by replication
        # rather than crop: no source pixel is lost.
        self.pad_w = -width % align[0]
        self.pad_h = -height % align[1]
        self.target = AtomicPath(path)
        try:
            self.container = av.open(str(self.target.tmp), "w", format=container_format)
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width = width + self.pad_w
            self.stream.height = height + self.pad_h
            self.stream.pix_fmt = pix_fmt
            self.stream.options = options
            threads = codec_threads()  # the process's thread policy (vosctl.threads)
            if threads is not None:
                self.stream.codec_context.thread_count = threads
            if profile is not None:
                self.stream.profile = profile
        except BaseException:
            self.abort()
            raise
        self.frames = 0

    def encode(self, array: np.ndarray, fmt: str) -> None:
        import av

        if self.pad_h or self.pad_w:
            array = cv2.copyMakeBorder(array, 0, self.pad_h, 0, self.pad_w, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(array, format=fmt)
        frame.pts = self.frames
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))  # flush delayed frames
        self.container.close()
        self.container = None
        self.target.commit()

    def abort(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # the file is being deleted anyway; keep the original error
                pass
            self.container = None
        self.target.abort()


class PngMaskSink(Sink):
    """``folder/00000.png, ...``: palette PNGs (mode P, DAVIS palette), object ids as indices.

    Files are named after the input frame index (5 digits, more when needed), so masks of a run
    started at ``--start-frame`` line up with the frames they belong to.
    """

    def __init__(self, folder: PathLike, compress_level: int = 1) -> None:
        self.target = AtomicPath(folder, folder=True)
        # Level 1: masks compress well anyway; higher levels cost several times the time.
        self.compress_level = compress_level
        self.count = 0

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects) -> None:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # mode L
        image.putpalette(DAVIS_PALETTE_BYTES)  # L + palette -> P, indices untouched
        image.save(self.target.tmp / f"{index:05d}.png", format="PNG", compress_level=self.compress_level)
        self.count += 1

    def close(self) -> None:
        self.target.commit()

    def abort(self) -> None:
        self.target.abort()


_KERNEL3 = np.ones((3, 3), np.uint8)


def render_overlay(rgb: np.ndarray, labels: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The frame with each object tinted in its DAVIS colour and outlined (2 px contour).

    Only the bounding box of the objects (plus a pixel for the contour) is processed, so small
    objects on large frames cost little.
    """
    out = np.array(rgb, dtype=np.uint8, copy=True, order="C")
    rows = np.flatnonzero(labels.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(labels.any(axis=0))
    height, width = labels.shape
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, height)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, width)
    lab = np.ascontiguousarray(labels[y0:y1, x0:x1], dtype=np.uint8)  # cv2 morphology wants uint8
    view = out[y0:y1, x0:x1]
    colours = DAVIS_PALETTE[lab]
    blended = cv2.addWeighted(view, 1.0 - opacity, colours, opacity, 0.0)
    np.copyto(view, blended, where=(lab > 0)[..., None])
    # Contour: pixels whose 3x3 neighbourhood holds more than one label (one pixel each side of
    # every boundary), drawn in the colour of the highest id around them.
    grown = cv2.dilate(lab, _KERNEL3)
    edge = grown != cv2.erode(lab, _KERNEL3)
    view[edge] = DAVIS_PALETTE[grown[edge]]
    return out


_OVERLAY_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class OverlayVideoSink(Sink):
    """An H.264 video (mp4) of the frames with the objects tinted and outlined.

    The source frame rate is kept. Odd frame sizes are padded by one replicated row/column
    (4:2:0 H.264 needs even sizes). ``preset``/``crf`` trade speed for size.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        width: int,
        height: int,
        preset: str = "veryfast",
        crf: int = 20,
        opacity: float = 0.5,
    ) -> None:
        self.width, self.height, self.opacity = width, height, opacity
        container_format = _OVERLAY_FORMATS.get(Path(path).suffix.lower(), "mp4")
        self.video = _VideoWriter(
            path, container_format, "libx264", "yuv420p", fps, width, height,
            {"preset": preset, "crf": str(crf)}, align=(2, 2),
        )  # fmt: skip

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects) -> None:
        _check_frame("overlay", rgb, labels, self.width, self.height)
        self.video.encode(render_overlay(rgb, labels, self.opacity), "rgb24")

    def close(self) -> None:
        self.video.close()

    def abort(self) -> None:
        self.video.abort()


ALPHA_FORMATS = ("prores", "webm", "png", "gray")

# RGBA PNGs of real frames compress poorly whatever the effort; the SUB filter + run-length
# strategy wrote them ~2x faster than zlib level 1 with adaptive filters for files ~8% larger.
_RGBA_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
]  # fmt: skip


class AlphaSink(Sink):
    """A matte for compositing: alpha = 255 wherever any object is, 0 elsewhere.

    ``fmt``: ``prores`` -> ProRes 4444 ``.mov`` with alpha (RGB = source frame), ``webm`` -> VP9
    with alpha, ``png`` -> a folder of RGBA PNGs (``00000.png``, ...), ``gray`` -> an H.264 mp4
    whose picture is the matte (white = object). Sizes an encoder cannot take (odd widths for
    ProRes, odd sizes for H.264) are padded by one replicated column/row. RGB+alpha outputs carry
    straight (unpremultiplied) alpha. Note: FFmpeg's built-in VP9 decoder drops the alpha plane;
    decode alpha WebM with ``libvpx-vp9``.
    """

    def __init__(self, path: PathLike, fps: float, width: int, height: int, fmt: str = "prores") -> None:
        if fmt not in ALPHA_FORMATS:
            raise ValueError(f"unknown alpha format {fmt!r} (use {', '.join(ALPHA_FORMATS)})")
        self.fmt, self.width, self.height = fmt, width, height
        self.video: _VideoWriter | None = None
        self.folder: AtomicPath | None = None
        self._rgba: np.ndarray | None = None
        if fmt == "png":
            _rate(fps)  # validate anyway, for a consistent interface
            self.folder = AtomicPath(path, folder=True)
        elif fmt == "prores":
            # prores_aw rather than prores_ks: both write ProRes 4444 with alpha, but prores_ks'
            # rate-control search made it ~4x slower (about 18 vs 80 frames/s at 854x480 on a
            # busy 2-core machine, benchmarks/bench_io.py); prores_aw's picture is still visually
            # lossless (mean error under one level) and its alpha exact on binary mattes.
            self.video = _VideoWriter(
                path, "mov", "prores_aw", "yuva444p10le", fps, width, height,
                {"vendor": "apl0"}, align=(2, 1), profile="4444",
            )  # fmt: skip
        elif fmt == "webm":
            # realtime + cpu-used 8: libvpx's fast mode, several times faster than 'good'; the
            # quality is plenty for a matte of hard-edged masks.
            self.video = _VideoWriter(
                path, "webm", "libvpx-vp9", "yuva420p", fps, width, height,
                {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0", "row-mt": "1"},
            )  # fmt: skip
        else:
            self.video = _VideoWriter(
                path, "mp4", "libx264", "yuv420p", fps, width, height, {"preset": "veryfast", "crf": "16"}, align=(2, 2)
            )

    def _rgba_buffer(self, channels_from: np.ndarray, code: int) -> np.ndarray:
        """Reuse one H x W x 4 buffer: converting into it avoids a new allocation per frame."""
        if self._rgba is None:
            self._rgba = np.empty((self.height, self.width, 4), np.uint8)
        cv2.cvtColor(channels_from, code, dst=self._rgba)
        return self._rgba

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects) -> None:
        _check_frame("alpha", rgb, labels, self.width, self.height)
        alpha = np.where(labels > 0, np.uint8(255), np.uint8(0))
        if self.fmt == "gray":
            assert self.video is not None
            self.video.encode(alpha, "gray")
            return
        if self.fmt == "png":
            assert self.folder is not None
            bgra = self._rgba_buffer(rgb, cv2.COLOR_RGB2BGRA)
            bgra[..., 3] = alpha
            ok = cv2.imwrite(str(self.folder.tmp / f"{index:05d}.png"), bgra, _RGBA_PNG_PARAMS)
            if not ok:
                raise OSError(f"cannot write {self.folder.tmp / f'{index:05d}.png'}")
            return
        assert self.video is not None
        rgba = self._rgba_buffer(rgb, cv2.COLOR_RGB2RGBA)
        rgba[..., 3] = alpha
        self.video.encode(rgba, "rgba")

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        if self.folder is not None:
            self.folder.commit()

    def abort(self) -> None:
        if self.video is not None:
            self.video.abort()
        if self.folder is not None:
            self.folder.abort()


def _number(value: Any) -> int | float:
    """A JSON/CSV-friendly number: numpy scalars unwrapped, whole floats written as ints."""
    number = float(value)
    return int(number) if number.is_integer() else round(number, 3)


def _record(obj: ObjectResultLike) -> dict[str, Any]:
    box = obj.box
    x, y, w, h = (None, None, None, None) if box is None else (_number(v) for v in box)
    return {
        "object_id": int(obj.object_id),
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "area": int(obj.area),
        "score": round(float(obj.score), 4),
        "lost": bool(obj.lost),
    }


class TrackSink(Sink):
    """``track.json``: per-frame, per-object boxes, areas, scores and lost flags (streamed).

    Schema (one frame record per line, so the file is both valid JSON and greppable)::

        {"version": 1, "fps": 25.0,
         "frames": [
           {"frame": 0, "time": 0.0, "objects": [
              {"object_id": 1, "x": 120, "y": 80, "w": 64, "h": 40, "area": 2304,
               "score": 0.97, "lost": false}]},
           ...],
         "objects": {"1": {"frames": 300, "lost_frames": [187, 188]}}}

    ``time`` is ``frame / fps`` in seconds (``null`` when no fps is given); ``x, y, w, h`` are
    ``null`` when the object has no box (lost with an empty mask). The ``objects`` summary is
    written at the end; only lost frame numbers are kept in memory until then.

    ``write(..., extra={"direction": "backward", "prompt": [2]})`` adds those keys to the frame's
    record (before ``objects``): ``vosctl segment`` records which pass produced each frame and, on
    frames with a prompt, the ids it set; such ids also get ``"prompt_frames"`` in the summary.
    Readers of the original schema can ignore the extra keys.
    """

    def __init__(self, path: PathLike, fps: float | None = None) -> None:
        self.fps = float(fps) if fps else None
        self.target = AtomicPath(path)
        self.file = open(self.target.tmp, "w", encoding="utf-8")  # closed in close()/abort()
        self.file.write(f'{{"version": 1, "fps": {json.dumps(self.fps)},\n "frames": [')
        self.count = 0
        self.summary: dict[int, dict[str, Any]] = {}

    def write(
        self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects, extra: Mapping[str, Any] | None = None
    ) -> None:
        time = round(index / self.fps, 6) if self.fps else None
        records = [_record(objects[key]) for key in sorted(objects)]
        for record in records:
            info = self.summary.setdefault(record["object_id"], {"frames": 0, "lost_frames": []})
            info["frames"] += 1
            if record["lost"]:
                info["lost_frames"].append(int(index))
        frame_record: dict[str, Any] = {"frame": int(index), "time": time}
        if extra:
            frame_record.update(extra)
            for object_id in extra.get("prompt", ()):
                if object_id in self.summary:
                    self.summary[object_id].setdefault("prompt_frames", []).append(int(index))
        frame_record["objects"] = records
        line = json.dumps(frame_record, separators=(",", ":"))
        self.file.write(("\n  " if self.count == 0 else ",\n  ") + line)
        self.count += 1

    def close(self) -> None:
        objects = {str(key): value for key, value in sorted(self.summary.items())}
        self.file.write(f'\n ],\n "objects": {json.dumps(objects, separators=(",", ":"))}\n}}\n')
        self.file.close()
        self.target.commit()

    def abort(self) -> None:
        self.file.close()
        self.target.abort()


TRACK_CSV_FIELDS = ("frame", "time", "object_id", "x", "y", "w", "h", "area", "score", "lost")


class TrackCsvSink(Sink):
    """``track.csv``: one row per object per frame with the fields of :data:`TRACK_CSV_FIELDS`.

    Empty ``x, y, w, h`` when the object has no box, empty ``time`` without an fps; ``lost`` is
    ``true``/``false``.
    """

    def __init__(self, path: PathLike, fps: float | None = None) -> None:
        self.fps = float(fps) if fps else None
        self.target = AtomicPath(path)
        self.file = open(self.target.tmp, "w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(TRACK_CSV_FIELDS)

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray, objects: Objects) -> None:
        time = round(index / self.fps, 6) if self.fps else ""
        for key in sorted(objects):
            r = _record(objects[key])
            self.writer.writerow(
                [int(index), time, r["object_id"]]
                + ["" if r[k] is None else r[k] for k in ("x", "y", "w", "h")]
                + [r["area"], r["score"], "true" if r["lost"] else "false"]
            )

    def close(self) -> None:
        self.file.close()
        self.target.commit()

    def abort(self) -> None:
        self.file.close()
        self.target.abort()
