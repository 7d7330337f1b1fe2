"""Issue #11: arrays handed to the Python API (frames, label maps) and odd mask files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scenes import iou, moving_square
from synth import write_palette_png

from vosctl.errors import InputError
from vosctl.io import read_mask_prompt
from vosctl.io.checks import check_frame, check_labels

W, H = 64, 48


@pytest.fixture(scope="module")
def segmenter():
    from inproc import _shared_model

    return _shared_model()


# ---------------------------------------------------------------- frames


def test_check_frame_passes_valid_frames_through_without_copy() -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    assert check_frame(rgb) is rgb


@pytest.mark.parametrize(
    ("array", "expect"),
    [
        (np.zeros((H, W, 3), np.float32), "float32, shape 48x64x3"),
        (np.zeros((H, W, 3), np.uint16), "uint16, shape 48x64x3"),
        (np.zeros((H, W, 3), bool), "bool"),
        (np.zeros((H, W, 2), np.uint8), "48x64x2"),
        (np.zeros((2, H, W, 3), np.uint8), "2x48x64x3"),
        (np.zeros((0, W, 3), np.uint8), "empty"),
    ],
)
def test_check_frame_refuses_with_dtype_and_shape(array: np.ndarray, expect: str) -> None:
    with pytest.raises(InputError, match=expect):
        check_frame(array)


def test_check_frame_converts_gray_rgba_and_views() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((H, W), 7, np.uint8)])
    assert np.array_equal(check_frame(rgba), rgb)
    gray = rgb[..., 0]
    for g in (gray, gray[..., None]):
        out = check_frame(np.ascontiguousarray(g))
        assert out.shape == (H, W, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))
    view = rgb[:, ::-1]
    out = check_frame(view)
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, view)


def test_tracker_refuses_float_frames(segmenter) -> None:
    frames, truth = moving_square(frames=3)
    with pytest.raises(InputError, match=r"float32, shape 240x320x3"):
        list(segmenter.track([f.astype(np.float32) for f in frames], labels=truth[0]))
    state, _ = segmenter.init_state(frames[0], labels=truth[0])
    with pytest.raises(InputError, match=r"float64"):
        segmenter.step(state, frames[1] / 255.0)


def test_tracker_accepts_rgba_and_gray_frames(segmenter) -> None:
    frames, truth = moving_square(frames=4)
    expected = [r.labels for r in segmenter.track(frames, labels=truth[0])]
    rgba = [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in frames]
    assert all(np.array_equal(r.labels, e) for r, e in zip(segmenter.track(rgba, labels=truth[0]), expected))
    gray = [f.mean(axis=2).astype(np.uint8) for f in frames]
    results = list(segmenter.track(gray, labels=truth[0]))
    assert len(results) == 4 and iou(results[-1].labels == 1, truth[-1] == 1) > 0.5


# ---------------------------------------------------------------- label maps


def test_int64_label_map_out_of_range_is_refused(segmenter) -> None:
    frames, truth = moving_square(frames=2)
    labels = truth[0].astype(np.int64) * 300  # used to wrap to id 44
    with pytest.raises(InputError, match=r"id 300 .*ids must be 1\.\.254"):
        segmenter.init_state(frames[0], labels=labels)
    with pytest.raises(InputError, match=r"id -1"):
        check_labels(-truth[0].astype(np.int32))


def test_check_labels_conversions() -> None:
    labels = np.zeros((H, W), np.int64)
    labels[:10, :10] = 3
    labels[20:, 20:] = 255  # void
    out = check_labels(labels, W, H)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 3}
    assert check_labels(labels > 0).max() == 1  # bool mask: object 1
    assert check_labels(labels.astype(np.float32)).max() == 3  # whole-number floats
    with pytest.raises(InputError, match="fractional"):
        check_labels(labels * 0.5)
    with pytest.raises(InputError, match="no object"):
        check_labels(np.full((H, W), 255, np.uint8))  # all void
    with pytest.raises(InputError, match="20x10 but the frames are 64x48"):
        check_labels(np.ones((10, 20), np.uint8), W, H)
    original = labels.astype(np.uint8)
    check_labels(original)
    assert (original == 255).any(), "the caller's array must not be modified"


@pytest.mark.parametrize("kind", ["palette", "gray", "white-rgb"])
def test_all_void_mask_file_is_refused_as_empty(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.png"
    full = np.full((H, W), 255, np.uint8)
    if kind == "palette":
        write_palette_png(path, full)
    elif kind == "gray":
        Image.fromarray(full).save(path)
    else:
        Image.fromarray(np.dstack([full] * 3)).save(path)
    with pytest.raises(InputError, match="no background"):
        read_mask_prompt(path, W, H)
