"""Deterministic synthetic scenes (frames + ground-truth label maps) for tracker tests."""

from __future__ import annotations

import numpy as np
from synth import texture, write_palette_png


def render(background: np.ndarray, objects: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Paint (texture, x, y) patches in order (later ones on top); label i+1 for the i-th."""
    frame = background.copy()
    labels = np.zeros(background.shape[:2], np.uint8)
    height, width = labels.shape
    for object_id, (patch, x, y) in enumerate(objects, start=1):
        ph, pw = patch.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, width), min(y + ph, height)
        if x1 <= x0 or y1 <= y0:
            continue
        frame[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]
        labels[y0:y1, x0:x1] = object_id
    return frame, labels


def moving_square(frames: int = 30, width: int = 320, height: int = 240) -> tuple[list[np.ndarray], list[np.ndarray]]:
    background = texture(1, height, width, cells=6)
    square = texture(2, 60, 60, cells=3)
    out = [render(background, [(square, 40 + 6 * t, 60 + 3 * t)]) for t in range(frames)]
    return [f for f, _ in out], [lab for _, lab in out]


def accelerating_square(
    acceleration: int = 4, frames: int = 22, width: int = 1280, height: int = 240
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A 48 px square speeding up along a wide strip: its step grows by ``acceleration`` px a frame.

    By frame ~11 (step ~45 px) it leaves a search window centred on its last position between
    two frames; a window centred ahead of it (vosctl.motion) keeps it.
    """
    background = texture(11, height, width, cells=8)
    square = texture(12, 48, 48, cells=3)
    out = [render(background, [(square, int(20 + acceleration * t * (t + 1) / 2), 90)]) for t in range(frames)]
    return [f for f, _ in out], [lab for _, lab in out]


def crossing_shapes(frames: int = 40, width: int = 320, height: int = 240) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two textured shapes moving towards each other; shape 2 passes over shape 1 and continues.

    Shape 1 has a coarse texture, shape 2 a fine one: two different objects. (Two look-alike
    shapes of the same colour statistics overlapping deeply can swap ids: a known limit, see
    models/README.md.)
    """
    background = texture(3, height, width, cells=6)
    a, b = texture(4, 56, 56, cells=3), texture(5, 48, 64, cells=12)
    out = []
    for t in range(frames):
        ax, ay = 30 + 5 * t, 90
        bx, by = 260 - 5 * t, 120  # overlaps the lower half of shape 1 while passing
        out.append(render(background, [(a, ax, ay), (b, bx, by)]))
    return [f for f, _ in out], [lab for _, lab in out]


def exit_and_return(width: int = 320, height: int = 240) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A square drifts right, leaves the frame completely, waits outside, and comes back."""
    background = texture(6, height, width, cells=6)
    square = texture(7, 56, 56, cells=3)
    xs = list(range(200, 340, 10)) + [340] * 6 + list(range(340, 180, -10))
    out = [render(background, [(square, x, 90)]) for x in xs]
    return [f for f, _ in out], [lab for _, lab in out]


def appearance_change(frames: int = 48, width: int = 320, height: int = 240):
    """One textured ellipse that turns, zooms to 3x and back, and changes brightness; always in view."""
    import cv2

    background = texture(8, height, width, cells=6)
    base = texture(9, 48, 64, cells=4)
    shape = np.zeros((48, 64), np.uint8)
    cv2.ellipse(shape, (32, 24), (31, 23), 0, 0, 360, 1, -1)
    out_frames, out_labels = [], []
    for t in range(frames):
        phase = t / (frames - 1)
        zoom = 1.0 + 2.0 * np.sin(np.pi * phase)  # 1 -> 3 -> 1
        angle = 90.0 * phase
        light = 1.0 + 0.35 * np.sin(2 * np.pi * phase)
        cx, cy = 160 + 20 * np.sin(2 * np.pi * phase), 120
        matrix = cv2.getRotationMatrix2D((32, 24), angle, zoom)
        matrix[:, 2] += (cx - 32, cy - 24)
        patch = np.clip(base.astype(np.float32) * light, 0, 255).astype(np.uint8)
        warped = cv2.warpAffine(patch, matrix, (width, height), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(shape, matrix, (width, height), flags=cv2.INTER_NEAREST).astype(bool)
        frame = background.copy()
        frame[mask] = warped[mask]
        out_frames.append(frame)
        out_labels.append(mask.astype(np.uint8))
    return out_frames, out_labels


def leave_and_reenter_elsewhere(width: int = 1280, height: int = 720):
    """A square leaves through the left edge, stays away, and comes back through the right edge."""
    background = texture(10, height, width, cells=10)
    square = texture(11, 56, 56, cells=3)
    xs = list(range(200, -80, -20)) + [-80] * 12 + list(range(width + 10, width - 400, -20))
    out = [render(background, [(square, x, 330)]) for x in xs]
    return [f for f, _ in out], [lab for _, lab in out]


def one_stays_one_leaves(width: int = 320, height: int = 240):
    """Object 1 drifts slowly in view; object 2 leaves through the left edge and stays away."""
    background = texture(12, height, width, cells=6)
    a, b = texture(13, 52, 52, cells=3), texture(14, 48, 48, cells=8)
    out = [render(background, [(a, 200 + 2 * t, 120 + t), (b, 60 - 14 * t, 40)]) for t in range(24)]
    return [f for f, _ in out], [lab for _, lab in out]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def write_mask(path, labels: np.ndarray) -> None:
    """Binary PNG for one object (as most users give it), DAVIS palette PNG for several."""
    from PIL import Image

    if len(np.unique(labels)) <= 2:
        Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(path)
    else:
        write_palette_png(path, labels)
