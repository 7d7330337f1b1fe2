"""Synthetic media for tests: textured frames, videos written with PyAV, frame folders, masks.

Nothing is downloaded or committed: every test builds its media in ``tmp_path``. Keep sizes small
(e.g. 64x48, a handful of frames) so the suite stays fast on a 2-core machine.

    frames = moving_square_frames(8, 64, 48)
    video = write_video(tmp_path / "clip.mp4", frames, fps=25)
    labels = moving_square_labels(8, 64, 48)[0]
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vosctl.results import ObjectResult

# Encoder per container when the caller does not name one: fast settings, small files.
DEFAULT_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}
FAST_OPTIONS = {
    "libx264": {"preset": "ultrafast", "crf": "12"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "0"},
    "mpeg4": {"qscale": "2"},
}


def texture(seed: int, height: int, width: int, cells: int = 4) -> np.ndarray:
    """A smooth random colour texture (bicubic upsampling of a coarse grid) with mild noise.

    Smooth so lossy codecs reproduce it closely; textured so trackers have something to match.
    """
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 4, (height, width, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def square_mask(height: int, width: int, top: int, left: int, side: int) -> np.ndarray:
    """A (height, width) bool mask holding one ``side`` x ``side`` square at (``top``, ``left``)."""
    mask = np.zeros((height, width), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def square_position(t: int, width: int, height: int, size: int) -> tuple[int, int]:
    """Top-left corner of the moving square at frame ``t`` (moves right and down, wraps)."""
    x = (width // 8 + 3 * t) % max(width - size, 1)
    y = (height // 8 + 2 * t) % max(height - size, 1)
    return x, y


def moving_square(
    n: int, width: int = 64, height: int = 48, seed: int = 0, size: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rgb, labels)`` for ``n`` frames of a textured square (id 1) over a textured background."""
    side = size or max(4, min(width, height) // 3)
    background = texture(seed, height, width, cells=6)
    square = texture(seed + 1, side, side, cells=3)
    for t in range(n):
        x, y = square_position(t, width, height, side)
        rgb = background.copy()
        rgb[y : y + side, x : x + side] = square
        labels = np.zeros((height, width), np.uint8)
        labels[y : y + side, x : x + side] = 1
        yield rgb, labels


def moving_square_frames(n: int, width: int = 64, height: int = 48, seed: int = 0) -> list[np.ndarray]:
    """The RGB frames of :func:`moving_square`."""
    return [rgb for rgb, _ in moving_square(n, width, height, seed)]


def moving_square_labels(n: int, width: int = 64, height: int = 48, seed: int = 0) -> list[np.ndarray]:
    """The label maps of :func:`moving_square` (id 1 = the square)."""
    return [labels for _, labels in moving_square(n, width, height, seed)]


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float | Fraction = 25,
    codec: str | None = None,
    rotation: int | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames into ``path`` (container from the extension) with PyAV.

    ``codec`` defaults by extension (mp4/mov/mkv: libx264, webm: libvpx-vp9, avi: mpeg4).
    ``rotation`` is the *clockwise* turn a player must apply to show the video upright (what
    ``FrameSource.rotation`` reports, and what a phone's ``rotate=90`` tag means); it is written
    as display-matrix side data, which stores the counter-clockwise angle. ``container_options``
    go to the muxer (e.g. ``{"movflags": "+faststart"}``: mp4 index before the data).
    """
    import av

    codec = codec or DEFAULT_CODECS.get(path.suffix.lower(), "libx264")
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", container_options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.pix_fmt = pix_fmt
        stream.options = dict(options if options is not None else FAST_OPTIONS.get(codec, {}))
        if rotation:
            stream.set_display_rotation(-rotation)
        opened = False
        for index, rgb in enumerate(frames):
            if not opened:
                stream.height, stream.width = rgb.shape[:2]
                opened = True
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_frame_folder(folder: Path, frames: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[Path]:
    """Write RGB frames as image files (format from each name's extension; default ``00000.png``...)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:05d}.png" for i in range(len(frames))]
    paths = []
    for name, rgb in zip(names, frames, strict=True):
        path = folder / name
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def write_davis2016(
    root: Path, sequences: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]], split: str = "train"
) -> Path:
    """A DAVIS-2016 folder; ``sequences``: name -> (RGB frames, masks, any non-zero = object).

    Writes ``ImageSets/2016/<split>.txt``, ``JPEGImages/480p/<seq>/00000.jpg``... and the masks as
    0/255 ``Annotations/480p/<seq>/00000.png``...
    """

    def write_mask(path: Path, mask: np.ndarray) -> None:
        cv2.imwrite(str(path), (mask > 0).astype(np.uint8) * 255)

    return _write_davis(root, "2016", sequences, split, write_mask)


def write_davis2017(
    root: Path, sequences: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]], split: str = "train"
) -> Path:
    """A DAVIS-2017 folder; ``sequences``: name -> (RGB frames, label maps of object ids, 255 void).

    Writes ``ImageSets/2017/<split>.txt``, ``JPEGImages/480p/<seq>/00000.jpg``... and the label maps
    as DAVIS palette PNGs ``Annotations/480p/<seq>/00000.png``...
    """
    return _write_davis(root, "2017", sequences, split, write_palette_png)


def _write_davis(
    root: Path,
    year: str,
    sequences: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    split: str,
    write_mask: Callable[[Path, np.ndarray], object],
) -> Path:
    (root / "ImageSets" / year).mkdir(parents=True)
    (root / "ImageSets" / year / f"{split}.txt").write_text("\n".join(sequences) + "\n")
    for name, (frames, masks) in sequences.items():
        stems = [f"{i:05d}" for i in range(len(frames))]
        write_frame_folder(root / "JPEGImages" / "480p" / name, frames, [f"{s}.jpg" for s in stems])
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for stem, mask in zip(stems, masks, strict=True):
            write_mask(root / "Annotations" / "480p" / name / f"{stem}.png", mask)
    return root


def write_palette_png(path: Path, labels: np.ndarray) -> Path:
    """Save a label map as a DAVIS-style palette PNG (mode P)."""
    from PIL import Image

    from vosctl.io.palette import DAVIS_PALETTE_BYTES

    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(DAVIS_PALETTE_BYTES)
    image.save(path)
    return path


def decode_video(path: Path, fmt: str = "rgb24", decoder: str | None = None) -> list[np.ndarray]:
    """Every frame of a video as arrays in pixel format ``fmt`` (e.g. rgb24, rgba, gray).

    ``decoder`` forces a decoder by name: FFmpeg's native VP9 decoder drops the alpha plane, so
    alpha WebM needs ``decoder="libvpx-vp9"``.
    """
    import av

    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if decoder is None:
            out = [frame.to_ndarray(format=fmt) for frame in container.decode(stream)]
        else:
            context = av.CodecContext.create(decoder, "r")
            for packet in container.demux(stream):
                out.extend(frame.to_ndarray(format=fmt) for frame in context.decode(packet if packet.size else None))
    return out


def video_info(path: Path) -> dict[str, Any]:
    """Header facts of a video: codec, fps (Fraction), width, height, frames (0 if not stored)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "codec": stream.codec_context.name,
            "fps": stream.average_rate,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frames": stream.frames,
            "pix_fmt": stream.codec_context.pix_fmt,
        }


def objects_from_labels(labels: np.ndarray, score: float = 0.9) -> dict[int, ObjectResult]:
    """One :class:`ObjectResult` per id present in ``labels`` (box and area from the mask)."""
    objects = {}
    for object_id in (int(v) for v in np.unique(labels) if v):
        ys, xs = np.nonzero(labels == object_id)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        objects[object_id] = ObjectResult(object_id, box, int(xs.size), score, False)
    return objects


def write_timed_video(path: Path, frames: Sequence[np.ndarray], times: Sequence[float], codec: str = "libx264") -> Path:
    """A variable-frame-rate video: frame ``i`` is shown at ``times[i]`` seconds (1 ms clock)."""
    import av

    clock = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(FAST_OPTIONS.get(codec, {}))
        stream.codec_context.time_base = clock
        stream.time_base = clock
        for time, rgb in zip(times, frames, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = round(time * 1000)
            frame.time_base = clock
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def run_vosctl(
    *args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The real CLI in a child process: this checkout first on the path, one thread (tests run beside other work)."""
    return subprocess.run(
        [sys.executable, "-m", "vosctl.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"},
        timeout=timeout,
    )
