"""Crop geometry shared by the tracker and the training data, so both see identical crops.

A crop is a square window of side ``side`` (frame pixels) centred at ``(cx, cy)``, resampled to
``out`` pixels. Outside the frame the crop is filled with the ImageNet mean colour, which the
network's input normalisation maps to zero.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# ImageNet mean in 0..255 RGB: normalises to 0, the least surprising padding for the network.
PAD_COLOUR = (124, 116, 104)


def template_side(width: float, height: float, context: float = 0.5) -> float:
    """SiamFC/SiamMask template window: the box plus ``context`` x its half-perimeter, made square."""
    pad = context * (width + height)
    return math.sqrt(max(width + pad, 1.0) * max(height + pad, 1.0))


def crop_matrix(cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """2x3 affine matrix mapping frame coordinates to crop coordinates."""
    scale = out / side
    return np.array([[scale, 0.0, out / 2.0 - scale * cx], [0.0, scale, out / 2.0 - scale * cy]], dtype=np.float64)


def crop_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int | tuple[int, int],
    out: np.ndarray | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``image`` (HxWx3 uint8, or one channel) into a crop of ``size`` (side, or (width, height)).

    Colour images are padded with :data:`PAD_COLOUR`, masks with 0; ``out`` is an optional
    preallocated destination (the tracker reuses its buffers every frame).
    """
    width, height = (size, size) if isinstance(size, int) else size
    border = PAD_COLOUR if image.ndim == 3 else 0
    return cv2.warpAffine(
        image, matrix, (width, height), dst=out, flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )


def paste_crop(
    crop: np.ndarray, matrix: np.ndarray, width: int, height: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Inverse of :func:`crop_image` for a single-channel map: crop -> frame (zero outside the crop)."""
    return cv2.warpAffine(
        crop,
        matrix,
        (width, height),
        dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x, y, w, h) of the non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)
