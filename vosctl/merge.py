"""Mask merging: every object's mask logits -> one label map, each pixel to at most one object.

Owner: throughput issue (#9) (window-local merging for large frames).
"""

from __future__ import annotations

import numpy as np


def merge_objects(
    logits: np.ndarray,
    own: np.ndarray,
    prev_masks: np.ndarray,
    ids: np.ndarray,
    overlap_prior_weight: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Label map (H, W) uint8 from per-object mask logits.

    logits: (N, H, W) float32; own: (N, H, W) bool, each object's own mask (logit above the
    threshold's, empty for objects that are not visible); prev_masks: (N, H, W) uint8, the previous
    frame's masks; ids: (N,) uint8 object ids. Overlaps go to the most confident object, pixel by
    pixel, with the tie broken towards the object that held the pixel in the previous frame: when
    two look-alike objects touch, both masks tend to swell over the pair, and the previous
    assignment is the evidence that tells them apart. The weighting is on probabilities (computed
    for the contested pixels only): ``sigmoid(logit) x (1 + overlap_prior_weight)`` for the previous owner.
    """
    height, width = logits.shape[1:]
    labels = np.zeros((height, width), np.uint8) if out is None else out
    labels.fill(0)
    if logits.shape[0] == 1:
        labels[own[0]] = ids[0]
        return labels
    best = logits.argmax(0)  # the sigmoid is monotonic: the most probable object
    contested = np.count_nonzero(own, axis=0) > 1  # only where two own masks overlap
    if contested.any():
        ys, xs = np.nonzero(contested)
        previous_owner = prev_masks[:, ys, xs] > 0
        probs = 0.5 + 0.5 * np.tanh(0.5 * logits[:, ys, xs])  # the sigmoid, without overflow at -inf
        weighted = probs * (1.0 + np.float32(overlap_prior_weight) * previous_owner)
        best[ys, xs] = weighted.argmax(0)
    keep = own.any(0)
    labels[keep] = ids[best[keep]]
    return labels


Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, end exclusive


def _overlaps(a: Window, b: Window) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def overlap_groups(windows: list[Window]) -> list[list[int]]:
    """Indices grouped into connected components of window overlap (pixels can only be contested inside one)."""
    groups: list[list[int]] = []
    unassigned = [i for i, w in enumerate(windows) if w[2] > w[0] and w[3] > w[1]]
    while unassigned:
        group, frontier = [], [unassigned.pop(0)]
        while frontier:
            i = frontier.pop()
            group.append(i)
            linked = [j for j in unassigned if _overlaps(windows[i], windows[j])]
            unassigned = [j for j in unassigned if j not in linked]
            frontier.extend(linked)
        groups.append(sorted(group))
    return groups


def merge_windows(
    labels: np.ndarray,
    windows: list[Window],
    logits: list[np.ndarray],
    own: list[np.ndarray],
    prev_masks: list,
    ids: np.ndarray,
    overlap_prior_weight: float,
) -> np.ndarray:
    """:func:`merge_objects` for window-local inputs, writing into ``labels`` (frame-sized, zeros).

    windows[i]: object i's window; logits[i] (float32) and own[i] (bool): its maps over that window
    (nothing / False outside, as after a full-frame paste); prev_masks[i]: a
    :class:`~vosctl.geometry.LocalMask`. Objects that must not be drawn (not visible) are passed
    with an all-False ``own``. Only the windows are read or written, so the cost follows the
    objects' sizes, not the frame's. An object whose window overlaps no other writes its own
    pixels directly; overlapping windows are merged together over the rectangle they span,
    exactly as the frame-sized merge would.
    """
    for group in overlap_groups(windows):
        if len(group) == 1:
            i = group[0]
            x0, y0, x1, y1 = windows[i]
            labels[y0:y1, x0:x1][own[i]] = ids[i]
            continue
        gx0, gy0 = min(windows[i][0] for i in group), min(windows[i][1] for i in group)
        gx1, gy1 = max(windows[i][2] for i in group), max(windows[i][3] for i in group)
        k, shape = len(group), (gy1 - gy0, gx1 - gx0)
        group_logits = np.full((k, *shape), -np.inf, np.float32)  # outside a window: never that object
        group_own = np.zeros((k, *shape), bool)
        group_prev = np.zeros((k, *shape), np.uint8)
        for slot, i in enumerate(group):
            x0, y0, x1, y1 = windows[i]
            group_logits[slot, y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0] = logits[i]
            group_own[slot, y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0] = own[i]
            prev_masks[i].paste_into(group_prev[slot], gx0, gy0)
        merged = merge_objects(group_logits, group_own, group_prev, ids[group], overlap_prior_weight)
        # Another group's pixels may lie inside this rectangle (windows do not overlap, their spans may).
        np.copyto(labels[gy0:gy1, gx0:gx1], merged, where=merged > 0)
    return labels
