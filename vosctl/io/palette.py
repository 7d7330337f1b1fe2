"""The DAVIS / PASCAL VOC colour palette.

Object id ``i`` is drawn in colour ``DAVIS_PALETTE[i]``: 0 black, 1 (128, 0, 0), 2 (0, 128, 0),
3 (128, 128, 0), 4 (0, 0, 128), ... The colour is built by spreading the bits of ``i`` over the
three channels, most significant colour bit first (the ``labelcolormap`` of the VOC devkit, which
DAVIS annotations use), so palette PNGs written by vosctl open with the same colours as DAVIS ones.
"""

from __future__ import annotations

import numpy as np


def _davis_palette() -> np.ndarray:
    ids = np.arange(256, dtype=np.int64)
    palette = np.zeros((256, 3), dtype=np.int64)
    # Bits 0, 1, 2 of each 3-bit group of the id go to R, G, B; group j sets colour bit 7 - j.
    for j in range(8):
        group = ids >> (3 * j)
        for channel in range(3):
            palette[:, channel] |= ((group >> channel) & 1) << (7 - j)
    return palette.astype(np.uint8)


DAVIS_PALETTE: np.ndarray = _davis_palette()
"""256 x 3 uint8 RGB colours, read-only."""
DAVIS_PALETTE.setflags(write=False)

DAVIS_PALETTE_BYTES: bytes = DAVIS_PALETTE.tobytes()
"""The palette as 768 bytes (R, G, B, R, G, B, ...), the form ``PIL.Image.putpalette`` takes."""


def colour_of(object_id: int) -> tuple[int, int, int]:
    """The RGB colour vosctl draws object ``object_id`` in."""
    r, g, b = DAVIS_PALETTE[int(object_id) & 0xFF]
    return int(r), int(g), int(b)
