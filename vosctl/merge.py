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
    """Label map (H, W) uint8 from per-object mask logits (frame-sized: the reference definition).

    logits: (N, H, W) float32; own: (N, H, W) bool, each object's own mask (its logit above the
    threshold, empty for objects that are not visible); prev_masks: (N, H, W) uint8, the previous
    frame's masks; ids: (N,) uint8 object ids. A pixel in one object's own mask is that object's.
    Overlaps go to the most confident object, pixel by pixel, with the tie broken towards the
    object that held the pixel in the previous frame: when two look-alike objects touch, both masks
    tend to swell over the pair, and the previous assignment is the evidence that tells them apart.
    The weighting is on probabilities: ``sigmoid(logit) x (1 + overlap_prior_weight)`` for the
    previous owner (:func:`contested_owners`). The tracker merges window by window
    (:func:`merge_windows`), with the same result.
    """
    labels = np.zeros(logits.shape[1:], np.uint8) if out is None else out
    labels.fill(0)
    for slot in range(logits.shape[0]):  # every claimed pixel; the contested ones are redone below
        labels[own[slot]] = ids[slot]
    contested = np.count_nonzero(own, axis=0) > 1
    if contested.any():
        ys, xs = np.nonzero(contested)
        labels[ys, xs] = ids[contested_owners(logits[:, ys, xs], prev_masks[:, ys, xs] > 0, overlap_prior_weight)]
    return labels


def contested_owners(logits: np.ndarray, previous_owner: np.ndarray, overlap_prior_weight: float) -> np.ndarray:
    """Slot of the object each contested pixel goes to: logits (N, P) float32, previous_owner (N, P) bool.

    The most probable object, its probability x (1 + ``overlap_prior_weight``) where it held the
    pixel in the previous frame. Computed on the contested pixels only.
    """
    probs = 0.5 + 0.5 * np.tanh(0.5 * logits)  # the sigmoid, without overflow at -inf
    weighted = probs * (1.0 + np.float32(overlap_prior_weight) * previous_owner)
    return weighted.argmax(0)


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
    objects' sizes, not the frame's. Every object writes its own pixels directly; where windows
    overlap, the pixels two or more objects claim are then decided exactly as the frame-sized
    merge decides them, from those pixels' logits and previous owners alone.
    """
    for group in overlap_groups(windows):
        if len(group) == 1:
            i = group[0]
            x0, y0, x1, y1 = windows[i]
            labels[y0:y1, x0:x1][own[i]] = ids[i]
            continue
        gx0, gy0 = min(windows[i][0] for i in group), min(windows[i][1] for i in group)
        gx1, gy1 = max(windows[i][2] for i in group), max(windows[i][3] for i in group)
        # Claims per pixel over the rectangle the group spans; only pixels claimed twice need a choice.
        claims = np.zeros((gy1 - gy0, gx1 - gx0), np.uint8)
        for i in group:
            x0, y0, x1, y1 = windows[i]
            view = claims[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
            np.add(view, own[i], out=view, casting="unsafe")
            labels[y0:y1, x0:x1][own[i]] = ids[i]  # contested pixels are redone below
        ys, xs = np.nonzero(claims > 1)
        if ys.size == 0:
            continue
        ys += gy0
        xs += gx0
        # Each object's logit (-inf outside its window: never that object) and previous ownership there.
        contested_logits = np.full((len(group), ys.size), -np.inf, np.float32)
        previous_owner = np.zeros((len(group), ys.size), bool)
        for slot, i in enumerate(group):
            x0, y0, x1, y1 = windows[i]
            inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
            contested_logits[slot, inside] = logits[i][ys[inside] - y0, xs[inside] - x0]
            previous_owner[slot] = prev_masks[i].values_at(ys, xs) > 0
        labels[ys, xs] = ids[group][contested_owners(contested_logits, previous_owner, overlap_prior_weight)]
    return labels
