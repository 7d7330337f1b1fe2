"""Sinks: round trips (what is written reads back intact) and atomicity (a failure leaves nothing)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from synth import decode_video, moving_square, objects_from_labels, video_info

from vosctl.io import (
    DAVIS_PALETTE,
    AlphaSink,
    AtomicPath,
    OverlayVideoSink,
    PngMaskSink,
    TrackCsvSink,
    TrackSink,
    render_overlay,
)
from vosctl.results import ObjectResult

W, H, N = 64, 48, 5


def _clip(n: int = N, width: int = W, height: int = H) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(moving_square(n, width, height))


def _visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_png_masks_keep_ids(tmp_path: Path) -> None:
    labels = np.zeros((H, W), np.uint8)
    labels[5:20, 5:30] = 3
    labels[25:40, 40:60] = 7
    rgb = np.zeros((H, W, 3), np.uint8)
    with PngMaskSink(tmp_path / "masks") as sink:
        for index in (4, 5, 6):  # names follow the input frame index (e.g. after --start-frame)
            sink.write(index, rgb, np.roll(labels, index, axis=1), {})
    assert _visible(tmp_path) == ["masks"]
    assert _visible(tmp_path / "masks") == ["00004.png", "00005.png", "00006.png"]
    with Image.open(tmp_path / "masks" / "00005.png") as image:
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image), np.roll(labels, 5, axis=1))
        palette = np.asarray(image.getpalette()[: 8 * 3], np.uint8).reshape(-1, 3)
    assert np.array_equal(palette, DAVIS_PALETTE[:8])


@pytest.mark.parametrize(("width", "height"), [(W, H), (63, 47)])
def test_overlay_video_round_trip(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "overlay.mp4"
    fps = 30000 / 1001
    with OverlayVideoSink(path, fps, width, height) as sink:
        for index, (rgb, labels) in enumerate(_clip(N, width, height)):
            sink.write(index, rgb, labels, objects_from_labels(labels))
    info = video_info(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["fps"] == Fraction(30000, 1001)
    assert info["frames"] == N
    # 4:2:0 needs even sizes: an odd frame gets one replicated row/column.
    assert (info["width"], info["height"]) == (width + width % 2, height + height % 2)
    assert len(decode_video(path)) == N
    assert _visible(tmp_path) == ["overlay.mp4"]


def test_render_overlay_tints_and_outlines() -> None:
    rgb = np.full((H, W, 3), 100, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[10:30, 10:40] = 2
    out = render_overlay(rgb, labels)
    expected_inside = (np.array([100, 100, 100]) + DAVIS_PALETTE[2]) / 2
    assert np.allclose(out[20, 25], expected_inside, atol=1)  # 50% blend with the object's colour
    assert out[10, 25].tolist() == DAVIS_PALETTE[2].tolist()  # contour, inside edge
    assert out[9, 25].tolist() == DAVIS_PALETTE[2].tolist()  # contour, outside edge
    assert out[0, 0].tolist() == [100, 100, 100] and out[40, 50].tolist() == [100, 100, 100]
    assert np.array_equal(render_overlay(rgb, np.zeros_like(labels)), rgb)


def _alpha_clip() -> list[tuple[np.ndarray, np.ndarray]]:
    clip = _clip()
    # two objects: the alpha is their union
    for _, labels in clip:
        labels[30:44, 2:14] = 2
    return clip


@pytest.mark.parametrize(
    ("fmt", "name", "decode"),
    [
        ("prores", "alpha.mov", {"fmt": "rgba"}),
        ("webm", "alpha.webm", {"fmt": "rgba", "decoder": "libvpx-vp9"}),
        ("gray", "alpha.mp4", {"fmt": "gray"}),
    ],
)
def test_alpha_video_round_trip(tmp_path: Path, fmt: str, name: str, decode: dict[str, str]) -> None:
    path = tmp_path / name
    clip = _alpha_clip()
    with AlphaSink(path, 25.0, W, H, fmt) as sink:
        for index, (rgb, labels) in enumerate(clip):
            sink.write(index, rgb, labels, objects_from_labels(labels))
    decoded = decode_video(path, **decode)
    assert len(decoded) == N
    assert video_info(path)["fps"] == 25
    for array, (rgb, labels) in zip(decoded, clip, strict=True):
        alpha = array[..., 3] if array.ndim == 3 else array
        expected = np.where(labels > 0, 255, 0)
        error = np.abs(alpha.astype(int) - expected)
        assert error.mean() < 3, f"{fmt}: mean alpha error {error.mean():.2f}"
        # away from the edges (where 4:2:0 / lossy coding may blur) the matte is exact to a few levels
        inner = cv2.erode((labels > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        outer = cv2.dilate((labels > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        assert error[inner | outer].max() <= 8
        if array.ndim == 3:  # RGB + alpha: the colour is the source frame
            assert np.abs(array[..., :3].astype(int) - rgb).mean() < 8
    assert _visible(tmp_path) == [name]


def test_alpha_png_round_trip(tmp_path: Path) -> None:
    clip = _alpha_clip()
    with AlphaSink(tmp_path / "alpha", 25.0, W, H, "png") as sink:
        for index, (rgb, labels) in enumerate(clip):
            sink.write(index, rgb, labels, {})
    assert _visible(tmp_path / "alpha") == [f"{i:05d}.png" for i in range(N)]
    for index, (rgb, labels) in enumerate(clip):
        with Image.open(tmp_path / "alpha" / f"{index:05d}.png") as image:
            assert image.mode == "RGBA"
            rgba = np.asarray(image)
        assert np.array_equal(rgba[..., :3], rgb)  # lossless
        assert np.array_equal(rgba[..., 3], np.where(labels > 0, 255, 0))


def _track_frames() -> list[dict[int, ObjectResult]]:
    return [
        {
            1: ObjectResult(1, (10, 20, 30, 40), 1200, 0.95, False),
            2: ObjectResult(2, (50.5, 5, 10, 10), 90, 0.8, False),
        },
        {1: ObjectResult(1, (12, 21, 30, 40), 1180, np.float32(0.91), False), 2: ObjectResult(2, None, 0, 0.1, True)},
        {2: ObjectResult(np.int64(2), (52, 6, 10, 10), 95, 0.7, False), 1: ObjectResult(1, None, 0, 0.05, True)},
    ]


def test_track_json(tmp_path: Path) -> None:
    rgb, labels = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)
    with TrackSink(tmp_path / "track.json", fps=25.0) as sink:
        for index, objects in enumerate(_track_frames()):
            sink.write(index + 10, rgb, labels, objects)
    data = json.loads((tmp_path / "track.json").read_text())
    assert data["version"] == 1 and data["fps"] == 25.0
    assert [f["frame"] for f in data["frames"]] == [10, 11, 12]
    assert [f["time"] for f in data["frames"]] == pytest.approx([0.4, 0.44, 0.48])
    first = data["frames"][0]["objects"]
    assert first[0] == {
        "object_id": 1, "x": 10, "y": 20, "w": 30, "h": 40, "area": 1200, "score": 0.95, "lost": False,
    }  # fmt: skip
    assert first[1]["x"] == 50.5
    lost = data["frames"][1]["objects"][1]
    assert lost["lost"] is True and lost["x"] is None and lost["w"] is None
    assert [o["object_id"] for o in data["frames"][2]["objects"]] == [1, 2]  # sorted by id
    assert data["objects"] == {"1": {"frames": 3, "lost_frames": [12]}, "2": {"frames": 3, "lost_frames": [11]}}


def test_track_csv(tmp_path: Path) -> None:
    rgb, labels = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)
    with TrackCsvSink(tmp_path / "track.csv", fps=25.0) as sink:
        for index, objects in enumerate(_track_frames()):
            sink.write(index, rgb, labels, objects)
    with open(tmp_path / "track.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["frame", "time", "object_id", "x", "y", "w", "h", "area", "score", "lost"]
    assert len(rows) == 6
    assert rows[0] == {
        "frame": "0", "time": "0.0", "object_id": "1", "x": "10", "y": "20", "w": "30", "h": "40",
        "area": "1200", "score": "0.95", "lost": "false",
    }  # fmt: skip
    assert rows[3]["object_id"] == "2" and rows[3]["x"] == "" and rows[3]["lost"] == "true"
    assert float(rows[2]["score"]) == pytest.approx(0.91)


def _all_sinks(out: Path) -> list:
    return [
        PngMaskSink(out / "masks"),
        OverlayVideoSink(out / "overlay.mp4", 25.0, W, H),
        AlphaSink(out / "alpha.mov", 25.0, W, H, "prores"),
        AlphaSink(out / "alpha.webm", 25.0, W, H, "webm"),
        AlphaSink(out / "alpha", 25.0, W, H, "png"),
        AlphaSink(out / "alpha.mp4", 25.0, W, H, "gray"),
        TrackSink(out / "track.json", fps=25.0),
        TrackCsvSink(out / "track.csv", fps=25.0),
    ]


def test_failure_mid_way_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="boom"), contextlib.ExitStack() as stack:
        sinks = [stack.enter_context(sink) for sink in _all_sinks(out)]
        for index, (rgb, labels) in enumerate(_clip(3)):
            for sink in sinks:
                sink.write(index, rgb, labels, objects_from_labels(labels))
        raise RuntimeError("boom")
    assert _visible(out) == []


def test_success_commits_every_output_and_no_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"  # parents are created
    with contextlib.ExitStack() as stack:
        sinks = [stack.enter_context(sink) for sink in _all_sinks(out)]
        for index, (rgb, labels) in enumerate(_clip(2)):
            for sink in sinks:
                sink.write(index, rgb, labels, objects_from_labels(labels))
    assert _visible(out) == sorted(
        ["masks", "overlay.mp4", "alpha.mov", "alpha.webm", "alpha", "alpha.mp4", "track.json", "track.csv"]
    )


def test_abort_removes_parents_it_created(tmp_path: Path) -> None:
    sink = TrackSink(tmp_path / "a" / "b" / "track.json")
    sink.abort()
    assert _visible(tmp_path) == []


def test_atomic_replace_of_existing_outputs(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "stale.png").write_bytes(b"old")
    (tmp_path / "track.json").write_text("old")
    with AtomicPath(tmp_path / "masks", folder=True) as target:
        (target.tmp / "00000.png").write_bytes(b"new")
        assert (tmp_path / "masks" / "stale.png").exists()  # the old output stays until the commit
    with AtomicPath(tmp_path / "track.json") as target:
        target.tmp.write_text("new")
    assert _visible(tmp_path) == ["masks", "track.json"]
    assert _visible(tmp_path / "masks") == ["00000.png"]
    assert (tmp_path / "track.json").read_text() == "new"
