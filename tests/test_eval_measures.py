"""The DAVIS measures against hand-computed values and a literal (full-frame) port of the toolkit."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vosctl.eval.measures import (
    bound_pixels,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    decay_bins,
    disk,
    f_measure,
    seg2bmap,
)

DAVIS_SHAPE = (480, 854)  # bound_pix = ceil(0.008 * 979.6) = 8


def square(shape: tuple[int, int], x: int, y: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y : y + side, x : x + side] = True
    return mask


# --------------------------------------------------------------------------- literal reference
# Written line by line after davis2017-evaluation/davis2017/metrics.py: whole frame, no cropping,
# the disk with explicit loops. The fast versions must agree with it exactly.


def ref_seg2bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def ref_disk(radius: int) -> np.ndarray:
    size = 2 * radius + 1
    out = np.zeros((size, size), np.uint8)
    for y in range(size):
        for x in range(size):
            out[y, x] = (x - radius) ** 2 + (y - radius) ** 2 <= radius**2
    return out


def ref_f_measure(fg: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008) -> float:
    void = np.zeros_like(fg, dtype=bool) if void is None else void.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    fg_b = ref_seg2bmap(fg * np.logical_not(void))
    gt_b = ref_seg2bmap(gt * np.logical_not(void))
    kernel = ref_disk(int(bound_pix))
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    gt_match = gt_b * fg_dil
    fg_match = fg_b * gt_dil
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def blobs(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """Random ellipses, some touching the frame edges (the seg2bmap edge rules matter there)."""
    mask = np.zeros(shape, np.uint8)
    h, w = shape
    for _ in range(count):
        centre = (int(rng.integers(-5, w + 5)), int(rng.integers(-5, h + 5)))
        axes = (int(rng.integers(1, w // 3)), int(rng.integers(1, h // 3)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    if rng.random() < 0.3:  # speckle: many tiny boundaries
        mask |= (rng.random(shape) < 0.01).astype(np.uint8)
    return mask.astype(bool)


# --------------------------------------------------------------------------- seg2bmap, disk


def test_seg2bmap_by_hand() -> None:
    seg = np.zeros((4, 4), bool)
    seg[1:3, 1:3] = True
    # A ring half a pixel towards the origin; last row/column follow the special rules.
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_seg2bmap_matches_reference_and_stacks() -> None:
    rng = np.random.default_rng(0)
    stack = np.stack([blobs(rng, (37, 53), 3) for _ in range(6)])
    expected = np.stack([ref_seg2bmap(frame) for frame in stack])
    np.testing.assert_array_equal(seg2bmap(stack), expected)
    full = np.ones((5, 7), bool)  # a full frame: only the last row/column rules can fire, and do not
    np.testing.assert_array_equal(seg2bmap(full), ref_seg2bmap(full))


@pytest.mark.parametrize("radius", [1, 2, 5, 8, 11])
def test_disk_is_skimage_disk(radius: int) -> None:
    np.testing.assert_array_equal(disk(float(radius)), ref_disk(radius))


def test_bound_pixels() -> None:
    assert bound_pixels(DAVIS_SHAPE) == 8.0
    assert bound_pixels((48, 64)) == 1.0  # ceil(0.64)
    assert bound_pixels((48, 64), bound_th=3) == 3.0  # >= 1: pixels


# --------------------------------------------------------------------------- J and F by hand


def test_identical_masks_score_one() -> None:
    mask = square(DAVIS_SHAPE, 100, 120, 90)
    assert db_eval_iou(mask, mask) == 1.0
    assert db_eval_boundary(mask, mask) == 1.0


def test_disjoint_masks_score_zero() -> None:
    a, b = square(DAVIS_SHAPE, 10, 10, 50), square(DAVIS_SHAPE, 300, 200, 50)
    assert db_eval_iou(a, b) == 0.0
    assert db_eval_boundary(a, b) == 0.0


def test_both_empty_score_one() -> None:
    empty = np.zeros(DAVIS_SHAPE, bool)
    assert db_eval_iou(empty, empty) == 1.0
    assert db_eval_boundary(empty, empty) == 1.0  # toolkit: no boundary on either side -> P = R = 1


def test_one_empty_scores_zero() -> None:
    empty, mask = np.zeros(DAVIS_SHAPE, bool), square(DAVIS_SHAPE, 100, 100, 40)
    assert db_eval_iou(mask, empty) == 0.0 and db_eval_iou(empty, mask) == 0.0
    # Result empty: P = 1, R = 0; annotation empty: P = 0, R = 1; F = 0 either way.
    assert db_eval_boundary(mask, empty) == 0.0 and db_eval_boundary(empty, mask) == 0.0


@pytest.mark.parametrize("shift", [1, 3, 8, 9, 20])
def test_shifted_square(shift: int) -> None:
    side = 100
    gt = square(DAVIS_SHAPE, 200, 150, side)
    res = square(DAVIS_SHAPE, 200 + shift, 150, side)
    # Horizontal shift k: intersection (s - k) * s, union (s + k) * s.
    assert db_eval_iou(gt, res) == pytest.approx((side - shift) * side / ((side + shift) * side), abs=1e-12)
    f = db_eval_boundary(gt, res)
    if shift <= bound_pixels(DAVIS_SHAPE):  # every boundary pixel within the 8-pixel disk
        assert f == 1.0
    else:
        assert f < 1.0
    assert f == ref_f_measure(res, gt)


def test_void_pixels_are_excluded() -> None:
    gt = square(DAVIS_SHAPE, 100, 100, 50)
    res = gt.copy()
    res[300:320, 300:320] = True  # a false positive ...
    void = np.zeros(DAVIS_SHAPE, bool)
    void[290:330, 290:330] = True  # ... inside a void region
    assert db_eval_iou(gt, res) < 1.0
    assert db_eval_iou(gt, res, void) == 1.0
    assert db_eval_boundary(gt, res, void) == 1.0


# --------------------------------------------------------------------------- against the reference


def test_fast_f_matches_reference_on_random_masks() -> None:
    rng = np.random.default_rng(1)
    for shape in [(48, 64), (120, 90), DAVIS_SHAPE]:
        for _ in range(12):
            gt = blobs(rng, shape, int(rng.integers(0, 4)))
            res = blobs(rng, shape, int(rng.integers(0, 4))) if rng.random() < 0.5 else np.roll(gt, 3, axis=1)
            void = blobs(rng, shape, 1) if rng.random() < 0.3 else None
            assert f_measure(res, gt, void) == ref_f_measure(res, gt, void)


def test_stack_versions_match_per_frame() -> None:
    rng = np.random.default_rng(2)
    gt = np.stack([blobs(rng, (60, 80), 2) for _ in range(5)])
    res = np.stack([blobs(rng, (60, 80), 2) for _ in range(5)])
    gt[2] = False
    res[2] = False  # both empty on one frame
    j = db_eval_iou(gt, res)
    f = db_eval_boundary(gt, res)
    assert j.shape == f.shape == (5,)
    for t in range(5):
        union = np.sum(gt[t] | res[t])
        assert j[t] == (1.0 if union == 0 else np.sum(gt[t] & res[t]) / union)
        assert f[t] == ref_f_measure(res[t], gt[t])


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        db_eval_iou(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="do not match"):
        db_eval_boundary(np.zeros((4, 4)), np.zeros((5, 4)))


# --------------------------------------------------------------------------- statistics


def test_statistics_by_hand() -> None:
    values = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.9, 0.3, 0.7])
    # ids = round(linspace(1, 8, 5) + 1e-10) - 1 = round([1, 2.75, 4.5, 6.25, 8]) - 1 = [0, 2, 4, 5, 7]
    # (4.5 rounds up thanks to the 1e-10); bins [0:3], [2:5], [4:6], [5:8].
    assert decay_bins(8) == [slice(0, 3), slice(2, 5), slice(4, 6), slice(5, 8)]
    stats = db_statistics(values)
    assert stats.mean == pytest.approx(4.9 / 8)
    assert stats.recall == pytest.approx(5 / 8)  # 0.6, 0.8, 1.0, 0.9, 0.7 are > 0.5
    assert stats.decay == pytest.approx((0.2 + 0.4 + 0.6) / 3 - (0.9 + 0.3 + 0.7) / 3)


def test_statistics_short_and_degenerate_curves() -> None:
    # 4 scored frames (a 6-frame sequence): ids = [0, 1, 2, 2, 3] -> first bin [0:2], last [2:4].
    stats = db_statistics(np.array([1.0, 0.8, 0.5, 0.2]))
    assert stats.decay == pytest.approx(0.9 - 0.35)
    assert stats.recall == pytest.approx(0.5)  # 0.5 itself is not > 0.5
    one = db_statistics(np.array([0.7]))
    assert (one.mean, one.recall, one.decay) == (0.7, 1.0, 0.0)
    constant = db_statistics(np.full(10, 0.4))
    assert constant.decay == 0.0 and constant.recall == 0.0
    empty = db_statistics(np.array([]))
    assert math.isnan(empty.mean) and math.isnan(empty.decay)
    with_nan = db_statistics(np.array([1.0, np.nan, 0.0, 1.0]))
    assert with_nan.mean == pytest.approx(2 / 3)
    assert with_nan.recall == pytest.approx(0.5)  # NaN counts as not recalled, as nanmean(x > 0.5)


def test_grey_alpha_annotation_reads_its_grey_channel(tmp_path) -> None:
    """Some original DAVIS-2016 masks (bear/00077.png) are grey+alpha PNGs."""
    from PIL import Image

    from vosctl.eval.davis import read_label_png

    grey = np.zeros((6, 8), np.uint8)
    grey[2:4, 3:6] = 255
    alpha = np.full_like(grey, 255)
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(tmp_path / "la.png")
    assert np.array_equal(read_label_png(tmp_path / "la.png"), grey)
