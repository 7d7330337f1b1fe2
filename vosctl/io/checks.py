"""Validation of arrays handed to the Python API: frames and first-frame label maps.

The tracker's crops write into preallocated ``uint8`` buffers; an array of another dtype makes
OpenCV allocate a new output that is then dropped, so a ``float32`` frame used to give garbage
masks without any error, and an ``int64`` label map with id 300 silently wrapped to id 44. Every
array that enters the tracker goes through these checks first: what can be converted without
guessing is converted (grayscale and RGBA ``uint8`` frames, non-contiguous views, integer or
boolean label maps), anything else is an :class:`InputError` naming the dtype and shape.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vosctl.errors import InputError

VOID_ID = 255
"""Label 255 is "void" (DAVIS/VOC): not an object; read as background."""
MAX_OBJECT_ID = 254


def _describe(array: np.ndarray) -> str:
    return f"dtype {array.dtype}, shape {'x'.join(str(n) for n in array.shape) or 'scalar'}"


def check_frame(rgb: Any) -> np.ndarray:
    """An ``H x W x 3`` C-contiguous ``uint8`` RGB frame from ``rgb``, or :class:`InputError`.

    Converted: ``H x W`` or ``H x W x 1`` grayscale (replicated to RGB), ``H x W x 4`` RGBA (alpha
    dropped), non-contiguous views (copied). Refused: any dtype but ``uint8`` (floats have no
    agreed range: 0..1 or 0..255), other shapes, empty frames. A valid frame is returned as is,
    without a copy.
    """
    array = rgb if isinstance(rgb, np.ndarray) else np.asarray(rgb)
    if array.dtype != np.uint8:
        raise InputError(
            f"frame has {_describe(array)}; frames must be uint8 RGB, H x W x 3 with values 0..255 "
            "(for floats in 0..1 use (frame * 255).round().astype(np.uint8))"
        )
    if array.ndim == 3 and array.shape[2] == 3:
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InputError(f"frame has {_describe(array)}: it is empty")
        return array if array.flags["C_CONTIGUOUS"] else np.ascontiguousarray(array)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 4)):
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InputError(f"frame has {_describe(array)}: it is empty")
        code = cv2.COLOR_RGBA2RGB if array.ndim == 3 and array.shape[2] == 4 else cv2.COLOR_GRAY2RGB
        return cv2.cvtColor(np.ascontiguousarray(array), code)
    raise InputError(
        f"frame has {_describe(array)}; frames must be uint8 RGB, H x W x 3 (grayscale H x W and RGBA H x W x 4 "
        "are converted)"
    )


def check_labels(
    labels: Any, width: int | None = None, height: int | None = None, allow_empty: bool = False
) -> np.ndarray:
    """A C-contiguous ``uint8`` label map (0 background, ids 1..254) from ``labels``, or :class:`InputError`.

    Accepted: boolean masks (object 1), integer arrays, float arrays holding whole numbers.
    ``255`` is void and becomes background (as in DAVIS/VOC masks). Refused, with the values
    found: ids below 0 or above 255 (they would wrap around in ``uint8``: 300 -> 44), fractional
    values, a map of the wrong size, and (unless ``allow_empty``: the caller reports that itself)
    a map with no object left.
    """
    array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if array.ndim != 2:
        raise InputError(f"mask has {_describe(array)}; a label map is H x W (0 = background, ids 1..254)")
    if width is not None and height is not None and array.shape != (height, width):
        raise InputError(f"mask is {array.shape[1]}x{array.shape[0]} but the frames are {width}x{height}")
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise InputError(f"mask has {_describe(array)}; a label map holds integer ids 1..254 (0 = background)")
    if array.dtype == np.uint8:
        out = np.array(array, dtype=np.uint8, order="C", copy=True)  # our own copy: void is cleared below
    else:
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise InputError(f"mask has {_describe(array)} with fractional values; object ids must be whole numbers")
        low, high = array.min(), array.max()
        if low < 0 or high > VOID_ID:
            bad = high if high > VOID_ID else low
            raise InputError(
                f"mask has id {bad:g} ({_describe(array)}); ids must be 1..{MAX_OBJECT_ID} (0 = background, 255 = void)"
            )
        out = np.ascontiguousarray(array, dtype=np.uint8)
    out[out == VOID_ID] = 0
    if not allow_empty and not out.any():
        raise InputError("mask has no object (every pixel is background 0 or void 255)")
    return out
