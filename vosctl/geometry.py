"""Crop geometry shared by the tracker and the training data, so both see identical crops.

Owner: throughput issue (#9) (torch crop path); the search-window rule is shared with training (#8).

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


def search_side(
    width: float,
    height: float,
    context: float,
    search_factor: float,
    frame_width: int | None = None,
    frame_height: int | None = None,
    cap_to_frame: bool = False,
) -> float:
    """Side (frame pixels) of the search window around an object of box size ``width`` x ``height``.

    ``search_factor`` times the template window (SiamMask); with ``cap_to_frame`` never wider than
    the frame's longer side, so a large object is not shrunk into a crop that is mostly padding.
    Training data and the tracker both call this, so they see the same scales.
    """
    side = template_side(width, height, context) * search_factor
    if cap_to_frame and frame_width and frame_height:
        side = min(side, float(max(frame_width, frame_height)))
    return side


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
