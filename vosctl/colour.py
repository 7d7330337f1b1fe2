"""A per-object colour likelihood fused into the mask logits (DAT-style foreground/background histograms).

From the prompt frame, each object keeps two colour histograms: of its own pixels and of the
background around it (other objects count as background). Per frame, the log ratio of the two,
clipped and weighted by ``ColourConfig.weight``, is looked up for the pixels of the object's paste
window where it can change the mask and added to the network's mask logits. A colour seen mostly
on the object pushes a doubtful pixel in, one seen mostly around it pushes it out; colours equally
common in both leave the logit alone. The tracker applies it to what is written only
(``Segmenter._rewrite_with_colour``).

Pure functions plus one small lookup table per object, so the cue can be tested alone.

Owner: accuracy issue (#8).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vosctl.errors import require


@dataclass(frozen=True)
class ColourConfig:
    weight: float = 1.0  # share of the colour log ratio added to the written mask logits (0: off)
    bits: int = 4  # histogram bits per channel (4: 16 x 16 x 16 bins)
    clip: float = 3.0  # the log ratio is clipped to +-clip before weighting
    surround: float = 2.0  # background region: the object's box grown to this x its sides, same centre

    def __post_init__(self) -> None:
        require(self.weight >= 0.0, f"colour.weight must be >= 0, got {self.weight}")
        require(1 <= self.bits <= 6, f"colour.bits must be in [1, 6], got {self.bits}")
        require(self.clip > 0.0, f"colour.clip must be > 0, got {self.clip}")
        require(self.surround >= 1.0, f"colour.surround must be >= 1, got {self.surround}")


@lru_cache(maxsize=8)
def _channel_tables(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel uint16 lookups whose sum is a pixel's histogram bin (made once per ``bits``)."""
    levels = np.arange(256, dtype=np.uint16) >> (8 - bits)
    return levels << (2 * bits), levels << bits, levels


def colour_bins(rgb: np.ndarray, bits: int) -> np.ndarray:
    """Histogram bin (uint16) of every pixel of an (H, W, 3) uint8 image."""
    red, green, blue = _channel_tables(bits)
    return red[rgb[..., 0]] + green[rgb[..., 1]] + blue[rgb[..., 2]]


def colour_table(
    rgb: np.ndarray, labels: np.ndarray, object_id: int, box: tuple[float, float, float, float], config: ColourConfig
) -> np.ndarray:
    """The object's colour evidence per histogram bin (float32): ``weight x clip(log(p_object / p_surround))``.

    ``box`` (x, y, w, h) is the object's box; its surround is the box grown ``config.surround``x
    about its centre, clipped to the frame. Both histograms get one pseudo-count per bin, so a colour
    seen on neither side gets ``log((n_surround + K) / (n_object + K))`` (K bins): a mild pull towards
    the object, larger for large objects. Smoothing both sides' frequencies equally instead (unseen
    colours exactly neutral) measured no better (model card, round 26).
    """
    height, width = labels.shape
    x, y, w, h = box
    grow_w, grow_h = (config.surround - 1.0) * w / 2, (config.surround - 1.0) * h / 2
    x0, y0 = max(0, int(x - grow_w)), max(0, int(y - grow_h))
    x1, y1 = min(width, int(np.ceil(x + w + grow_w))), min(height, int(np.ceil(y + h + grow_h)))
    bins = colour_bins(rgb[y0:y1, x0:x1], config.bits).ravel()
    inside = (labels[y0:y1, x0:x1] == object_id).ravel()
    count = 1 << (3 * config.bits)
    fg = np.bincount(bins[inside], minlength=count).astype(np.float64) + 1.0
    bg = np.bincount(bins[~inside], minlength=count).astype(np.float64) + 1.0
    ratio = np.log(fg / fg.sum()) - np.log(bg / bg.sum())
    return (config.weight * np.clip(ratio, -config.clip, config.clip)).astype(np.float32)


def refine_logits(
    out: np.ndarray,
    band: np.ndarray,
    logits: np.ndarray,
    rgb_window: np.ndarray,
    table: np.ndarray,
    threshold: float,
    config: ColourConfig,
) -> np.ndarray:
    """``out = logits + table[bin(pixel)]`` over one paste window, where it can change the mask.

    Evidence is at most ``weight x clip`` either way, so a pixel whose logit is that far below the
    threshold stays background whatever its colour: the lookup runs only over the rectangle that
    holds every other pixel (the object's neighbourhood, not its whole search window). ``out``
    (float32) and ``band`` (bool) are caller-owned buffers of the window's shape.
    """
    np.copyto(out, logits)
    np.greater(logits, threshold - config.weight * config.clip, out=band)
    rows, cols = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
    if rows.size == 0:
        return out
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out[y0:y1, x0:x1] += table[colour_bins(rgb_window[y0:y1, x0:x1], config.bits)]
    return out
