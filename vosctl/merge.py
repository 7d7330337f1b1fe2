"""Mask merging: every object's probability map -> one label map, each pixel to at most one object.

Owner: throughput issue (#9) (window-local merging for large frames).
"""

from __future__ import annotations

import numpy as np


def merge_objects(
    probs: np.ndarray,
    own: np.ndarray,
    prev_masks: np.ndarray,
    ids: np.ndarray,
    overlap_prior_weight: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Label map (H, W) uint8 from per-object probabilities.

    probs: (N, H, W) float32; own: (N, H, W) bool, each object's own mask (prob > threshold, empty
    for objects that are not visible); prev_masks: (N, H, W) uint8, the previous frame's masks;
    ids: (N,) uint8 object ids. Overlaps go to the most confident object, pixel by pixel, with the
    tie broken towards the object that held the pixel in the previous frame: when two look-alike
    objects touch, both masks tend to swell over the pair, and the previous assignment is the
    evidence that tells them apart.
    """
    height, width = probs.shape[1:]
    labels = np.zeros((height, width), np.uint8) if out is None else out
    labels.fill(0)
    if probs.shape[0] == 1:
        labels[own[0]] = ids[0]
        return labels
    best = probs.argmax(0)
    contested = np.count_nonzero(own, axis=0) > 1  # only where two own masks overlap
    if contested.any():
        ys, xs = np.nonzero(contested)
        previous_owner = prev_masks[:, ys, xs] > 0
        weighted = probs[:, ys, xs] * (1.0 + np.float32(overlap_prior_weight) * previous_owner)
        best[ys, xs] = weighted.argmax(0)
    keep = own.any(0)
    labels[keep] = ids[best[keep]]
    return labels
