"""The measures must stay fast: DAVIS val (about 1,400 frames of 854x480) well under a minute."""

from __future__ import annotations

import time

import cv2
import numpy as np

from vosctl.eval.benchmark import evaluate_sequence

H, W = 480, 854


def test_scoring_speed_on_davis_sized_frames() -> None:
    frames = 24
    rng = np.random.default_rng(0)
    gt = np.zeros((frames, H, W), np.uint8)
    res = np.zeros((frames, H, W), np.uint8)
    for t in range(frames):
        for object_id, (cx, cy) in enumerate([(250 + 4 * t, 200), (600 - 3 * t, 300)], start=1):
            axes = (120, 80)
            cv2.ellipse(gt[t], (cx, cy), axes, 5.0 * t, 0, 360, object_id, -1)
            jitter = rng.integers(-4, 5, size=2)
            cv2.ellipse(res[t], (cx + int(jitter[0]), cy + int(jitter[1])), axes, 5.0 * t + 2, 0, 360, object_id, -1)
    start = time.perf_counter()
    j, f = evaluate_sequence(gt, res, [1, 2])
    seconds = time.perf_counter() - start
    assert j.shape == f.shape == (2, frames)
    assert 0.8 < j.mean() < 1.0 and 0.8 < f.mean() <= 1.0
    # About 10 ms per frame here; 1,400 frames must stay far below a minute even on a busy box.
    assert seconds / frames * 1400 < 30, f"{seconds / frames * 1000:.1f} ms per frame"
