"""The DAVIS measures: region similarity J, boundary accuracy F, and their statistics.

A port of ``davis2017/metrics.py`` and ``db_statistics`` from the official toolkit
(https://github.com/davisvideochallenge/davis2017-evaluation, BSD licence; the DAVIS 2016
python toolkit defines the same measures), vectorised with numpy and OpenCV. The numbers are the
official ones bit for bit; only the way they are computed differs:

* ``seg2bmap`` is the same 4-neighbour XOR rule, applied to whole (stacks of) arrays.
* The F-measure works on the bounding box of the two masks (grown by one pixel) instead of the
  whole frame. Nothing outside that box can change a count (see ``f_measure``), and the
  dilation radius still comes from the *full* frame diagonal, as in the toolkit. On DAVIS
  (objects cover a fraction of a 854x480 frame) this is several times faster.
* The disk is skimage's ``disk(r)`` (``x^2 + y^2 <= r^2``) built with numpy, so scikit-image is
  not a dependency.

Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

BOUND_TH = 0.008
"""Boundary tolerance of the toolkit: a fraction of the image diagonal (or pixels when >= 1)."""

DECAY_BINS = 4
"""The toolkit splits each per-frame curve in 4 (overlapping) bins for the decay."""


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=16)
def disk(radius: float) -> np.ndarray:
    """``skimage.morphology.disk(radius)`` as uint8: ``x^2 + y^2 <= radius^2`` on a (2r+1)^2 grid."""
    steps = np.arange(-radius, radius + 1)
    xs, ys = np.meshgrid(steps, steps)
    kernel = ((xs**2 + ys**2) <= radius**2).astype(np.uint8)
    kernel.setflags(write=False)  # cached: callers must not change it
    return kernel


def bound_pixels(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> float:
    """The dilation radius: ``bound_th`` pixels if >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm(shape[-2:])))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Binary boundary map with 1-pixel-wide boundaries, the toolkit's ``_seg2bmap``.

    Works on one ``H x W`` mask or on a stack ``(..., H, W)`` (each frame separately). A pixel is a
    boundary pixel when it differs from its east, south or south-east neighbour, so boundaries lie
    half a pixel towards the origin of the actual edge. As in the original (David Martin's
    ``seg2bmap.m``): the last row compares only with the east neighbour, the last column only with
    the south neighbour, and the bottom-right pixel is never a boundary. (The toolkit's optional
    resampling to another width/height is never used by the evaluation and is not ported.)
    """
    seg = np.asarray(seg).astype(bool, copy=False)
    if seg.ndim < 2:
        raise ValueError(f"seg2bmap needs an (..., H, W) array, got shape {seg.shape}")
    b = np.zeros_like(seg)
    # Interior: east, south and south-east neighbours (a pixel is at most ... H-2, W-2 here).
    inner = seg[..., :-1, :-1]
    b[..., :-1, :-1] = (inner ^ seg[..., :-1, 1:]) | (inner ^ seg[..., 1:, :-1]) | (inner ^ seg[..., 1:, 1:])
    # Last row: east neighbour only; last column: south neighbour only.
    b[..., -1, :-1] = seg[..., -1, :-1] ^ seg[..., -1, 1:]
    b[..., :-1, -1] = seg[..., :-1, -1] ^ seg[..., 1:, -1]
    b[..., -1, -1] = False
    return b


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` inclusive bounds of the non-zero pixels, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1])
    cols = np.flatnonzero(mask[top : bottom + 1].any(axis=0))
    return top, bottom, int(cols[0]), int(cols[-1])


def _precision_recall_f(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    """The toolkit's F from boundary counts, with its conventions for empty boundaries."""
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match / float(n_fg), gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- per frame


def f_measure(
    foreground_mask: np.ndarray,
    gt_mask: np.ndarray,
    void_pixels: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """Boundary F-measure of one binary mask against one binary annotation (toolkit ``f_measure``).

    Boundaries of both masks (void pixels removed) are matched within a disk of
    ``bound_pixels(shape)`` radius: precision = matched result boundary / result boundary,
    recall = matched annotation boundary / annotation boundary. Both empty -> 1; one empty -> 0.
    """
    fg = np.asarray(foreground_mask).astype(bool, copy=False)
    gt = np.asarray(gt_mask).astype(bool, copy=False)
    if fg.shape != gt.shape or fg.ndim != 2:
        raise ValueError(f"f_measure needs two H x W masks of one size, got {fg.shape} and {gt.shape}")
    if void_pixels is not None:
        keep = ~np.asarray(void_pixels, dtype=bool)
        fg, gt = fg & keep, gt & keep
    radius = bound_pixels(fg.shape, bound_th)

    box = _box(fg | gt)
    if box is None:  # both masks empty: both boundaries empty
        return _precision_recall_f(0, 0, 0, 0)
    height, width = fg.shape
    top, bottom, left, right = box
    # Work on the masks' box grown by one pixel on each side (clipped to the frame). Why this
    # gives the full-frame counts exactly:
    # - every boundary pixel lies in the box or one pixel before it (boundaries are offset towards
    #   the origin), so the crop holds all of them;
    # - seg2bmap treats the last row/column of its input specially; where the crop ends before
    #   the frame does, that row/column is empty and so is the next one of the frame, so both rules
    #   give 0 there; every other pixel only looks at neighbours inside the crop;
    # - the dilated maps are only read at boundary pixels of the other mask (inside the crop), and
    #   a dilation there only sees boundary pixels, all inside the crop (OpenCV's dilation ignores
    #   the outside, like the zeros it stands for).
    # The radius still comes from the full frame's diagonal, as in the toolkit.
    y0, y1 = max(top - 1, 0), min(bottom + 2, height)
    x0, x1 = max(left - 1, 0), min(right + 2, width)
    fg_boundary = seg2bmap(fg[y0:y1, x0:x1])
    gt_boundary = seg2bmap(gt[y0:y1, x0:x1])

    n_fg = int(np.count_nonzero(fg_boundary))
    n_gt = int(np.count_nonzero(gt_boundary))
    if n_fg == 0 or n_gt == 0:
        return _precision_recall_f(n_fg, n_gt, 0, 0)
    kernel = disk(radius)
    fg_dil = cv2.dilate(fg_boundary.view(np.uint8), kernel).view(bool)
    gt_dil = cv2.dilate(gt_boundary.view(np.uint8), kernel).view(bool)
    fg_match = int(np.count_nonzero(fg_boundary & gt_dil))
    gt_match = int(np.count_nonzero(gt_boundary & fg_dil))
    return _precision_recall_f(n_fg, n_gt, fg_match, gt_match)


# --------------------------------------------------------------------------- stacks


def _check_pair(annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None) -> None:
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} dimensions do not match")
    if void_pixels is not None and void_pixels.shape != annotation.shape:
        raise ValueError(f"annotation {annotation.shape} and void pixels {void_pixels.shape} dimensions do not match")


def db_eval_iou(
    annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None
) -> float | np.ndarray:
    """Region similarity J (Jaccard index) of one ``H x W`` frame or of each frame of a stack.

    Void pixels are excluded from both intersection and union. An empty union (both masks empty)
    scores 1, as in the toolkit.
    """
    annotation = np.asarray(annotation).astype(bool, copy=False)
    segmentation = np.asarray(segmentation).astype(bool, copy=False)
    void = None if void_pixels is None else np.asarray(void_pixels).astype(bool, copy=False)
    _check_pair(annotation, segmentation, void)
    inter_map = annotation & segmentation
    union_map = annotation | segmentation
    if void is not None:
        inter_map &= ~void
        union_map &= ~void
    inters = np.count_nonzero(inter_map, axis=(-2, -1))
    union = np.count_nonzero(union_map, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = np.where(union == 0, 1.0, inters / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j.astype(np.float64)


def db_eval_boundary(
    annotation: np.ndarray,
    segmentation: np.ndarray,
    void_pixels: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float | np.ndarray:
    """Boundary accuracy F of one ``H x W`` frame or of each frame of a ``T x H x W`` stack."""
    annotation = np.asarray(annotation)
    segmentation = np.asarray(segmentation)
    void = None if void_pixels is None else np.asarray(void_pixels)
    _check_pair(annotation, segmentation, void)
    if annotation.ndim == 2:
        return f_measure(segmentation, annotation, void, bound_th=bound_th)
    if annotation.ndim != 3:
        raise ValueError(f"db_eval_boundary does not support arrays with {annotation.ndim} dimensions")
    return np.array(
        [
            f_measure(segmentation[t], annotation[t], None if void is None else void[t], bound_th=bound_th)
            for t in range(annotation.shape[0])
        ],
        dtype=np.float64,
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Statistics:
    """Mean, recall (fraction of frames scoring > 0.5) and decay of one per-frame curve."""

    mean: float
    recall: float
    decay: float


def decay_bins(n_values: int, n_bins: int = DECAY_BINS) -> list[slice]:
    """The toolkit's (overlapping) decay bins over ``n_values`` frames.

    ``ids = round(linspace(1, n, n_bins + 1) + 1e-10) - 1`` (the 1e-10 turns numpy's round-half-
    to-even into round-half-up) and bin ``i`` is ``values[ids[i] : ids[i + 1] + 1]``: consecutive
    bins share their boundary frame.
    """
    ids = (np.round(np.linspace(1, n_values, n_bins + 1) + 1e-10) - 1).astype(np.int64)
    # The toolkit casts to uint8 (wrapping past 255 frames); int64 is the same for DAVIS lengths.
    return [slice(int(ids[i]), int(ids[i + 1]) + 1) for i in range(n_bins)]


def db_statistics(per_frame_values: np.ndarray) -> Statistics:
    """Mean, recall and decay (mean of the first bin minus mean of the last) like the toolkit.

    NaN values are ignored (``nanmean``); an empty curve gives NaN everywhere, as the toolkit does.
    """
    values = np.asarray(per_frame_values, dtype=np.float64).ravel()
    if values.size == 0:
        return Statistics(math.nan, math.nan, math.nan)
    valid = ~np.isnan(values)
    mean = float(np.mean(values[valid])) if valid.any() else math.nan
    recall = float(np.mean(values > 0.5))  # NaN > 0.5 is False, as with nanmean(values > 0.5)
    bins = decay_bins(values.size)

    def _nanmean(chunk: np.ndarray) -> float:
        chunk = chunk[~np.isnan(chunk)]
        return float(np.mean(chunk)) if chunk.size else math.nan

    decay = _nanmean(values[bins[0]]) - _nanmean(values[bins[-1]])
    return Statistics(mean, recall, decay)
