"""Cost of a lost object among tracked ones: one forward per canvas size vs one shared canvas.

    python benchmarks/bench_lost_canvas.py [--objects 4] [--frames 30] [--threads N] [--json out.json]

A synthetic 854x480 clip with ``--objects`` textured squares: all stay in view except the last,
which leaves through the left edge early and stays away (lost: its search canvas widens to
``lost_max_scale`` and then sweeps the frame). The same clip is tracked twice, alternating,
in one process: with the tracker as shipped (objects grouped by canvas size, one batched
forward per group) and with every object forced onto the largest canvas (the behaviour before
the grouping). Reported: mean step milliseconds over the frames where the object is lost, the
ratio, and the mean IoU of the tracked objects in both (they should be at least as good).
Timings are a ratio measured in one run, so they hold on a loaded machine too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def clip(objects: int, frames: int, width: int = 854, height: int = 480):
    from scenes import render
    from synth import texture

    background = texture(20, height, width, cells=10)
    patches = [texture(21 + k, 56, 56, cells=3 + 2 * k) for k in range(objects)]
    out = []
    for t in range(frames):
        placed = [(patches[k], 120 + 170 * k + 2 * t, 200 + (k % 2) * 90) for k in range(objects - 1)]
        placed.append((patches[-1], 60 - 25 * t, 60))  # leaves through the left edge
        out.append(render(background, placed))
    return [f for f, _ in out], [lab for _, lab in out]


def run(segmenter, frames, truth, forced: bool):
    from scenes import iou

    import vosctl.tracker as tracker

    original = tracker.canvas_groups
    if forced:  # the old behaviour: every object on the largest canvas, one forward

        def one_group(sizes):
            height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
            return {(height, width): list(range(len(sizes)))}

        tracker.canvas_groups = one_group
    try:
        state, _ = segmenter.init_state(frames[0], labels=truth[0])
        times, ious = [], []
        n = int(truth[0].max())
        for frame, labels in zip(frames[1:], truth[1:]):
            start = time.perf_counter()
            result = segmenter.step(state, frame)
            elapsed = time.perf_counter() - start
            if result.objects[n].lost:
                times.append(elapsed)
                ious += [iou(result.labels == k, labels == k) for k in range(1, n)]
        return times, ious
    finally:
        tracker.canvas_groups = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from vosctl import Segmenter

    segmenter = Segmenter.from_pretrained(args.model, device="cpu", threads=args.threads)
    frames, truth = clip(args.objects, args.frames)
    grouped_t, forced_t, grouped_iou, forced_iou = [], [], [], []
    for _ in range(args.rounds):  # alternate, so load changes hit both alike
        t, i = run(segmenter, frames, truth, forced=False)
        grouped_t += t
        grouped_iou += i
        t, i = run(segmenter, frames, truth, forced=True)
        forced_t += t
        forced_iou += i
    report = {
        "objects": args.objects,
        "lost_frames_timed": len(grouped_t),
        "grouped_ms": round(1000 * float(np.mean(grouped_t)), 1),
        "one_canvas_ms": round(1000 * float(np.mean(forced_t)), 1),
        "speedup": round(float(np.mean(forced_t) / np.mean(grouped_t)), 2),
        "tracked_iou_grouped": round(float(np.mean(grouped_iou)), 3),
        "tracked_iou_one_canvas": round(float(np.mean(forced_iou)), 3),
        "threads": segmenter.threads,
    }
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
