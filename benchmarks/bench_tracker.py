"""Tracker speed on in-memory synthetic frames: crops, network, paste; no decoding, no writing.

    python benchmarks/bench_tracker.py [--model default] [--device cuda] [--objects 1,4,16]
        [--frames 300] [--size 854x480] [--precision auto] [--threads N] [--against K=V ...]

Needs neither PyAV nor a video file, so it also runs on machines that only have torch, NumPy and
OpenCV (the lent GPU machines). ``bench_segment.py speed`` is the end-to-end figure (decode +
segment + write); this one is the "segmenting alone" part of it. Each object is a textured disc
circling inside its own cell of a grid over a noise background; the first frame's labels are the prompt. Prints
one JSON line per object count: frames per second over all frames after the first ten (warm-up:
first CUDA kernels, the first memory updates). ``--against K=V`` (``vosctl segment --set``'s
settings, repeatable) also times a segmenter with those settings, right after the default one for
each object count, so the two figures share the machine's state (e.g. ``--against colour.weight=0``:
what the written-mask colour cue costs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def synthetic_video(frames: int, width: int, height: int, objects: int, seed: int = 0):
    """(frames as HxWx3 uint8, first-frame labels): ``objects`` discs, each circling inside its own
    cell of a grid, so none ever hides another (an occluded object would be declared lost and its
    wider search would be timed instead of tracking)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    colours = rng.integers(0, 255, (objects, 3))
    cols = int(np.ceil(np.sqrt(objects * width / height)))
    rows = int(np.ceil(objects / cols))
    cell_w, cell_h = width / cols, height / rows
    radius = max(6.0, 0.25 * min(cell_w, cell_h))
    amplitude = 0.2 * min(cell_w, cell_h)  # the disc stays inside its cell
    phases = rng.uniform(0, 2 * np.pi, objects)
    ys, xs = np.mgrid[0:height, 0:width]
    video, first_labels = [], None
    for t in range(frames):
        frame = background.copy()
        labels = np.zeros((height, width), np.uint8)
        for i in range(objects):
            row, col = divmod(i, cols)
            cx = (col + 0.5) * cell_w + amplitude * np.cos(phases[i] + t / 15)
            cy = (row + 0.5) * cell_h + amplitude * np.sin(phases[i] + t / 15)
            disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
            frame[disc] = colours[i]
            labels[disc] = i + 1
        video.append(frame)
        if first_labels is None:
            first_labels = labels
    return video, first_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--objects", default="1,4")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, help="default: the vosctl thread policy")
    parser.add_argument("--against", action="append", default=[], metavar="K=V", help="also time these settings")
    args = parser.parse_args()

    # The lent GPU machines run the working tree without installing it: import the package from here.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vosctl import Segmenter, SegmenterConfig
    from vosctl.overrides import apply_overrides

    width, height = (int(v) for v in args.size.split("x"))
    config = SegmenterConfig(precision=args.precision)
    settings = {"default": config}
    if args.against:
        settings[" ".join(args.against)] = apply_overrides(config, args.against)
    segmenters = {
        name: Segmenter.from_pretrained(args.model, device=args.device, config=cfg, threads=args.threads)
        for name, cfg in settings.items()
    }
    warmup = 10
    for objects in (int(v) for v in args.objects.split(",")):
        video, labels = synthetic_video(args.frames + warmup, width, height, objects)
        for name, segmenter in segmenters.items():
            stamps, lost = [], 0
            for result in segmenter.track(video, labels=labels):
                stamps.append(time.perf_counter())
                lost += sum(info.lost for info in result.objects.values())
            seconds = stamps[-1] - stamps[warmup - 1]
            row = {
                "model": args.model,
                "settings": name,
                "device": str(segmenter.engine.device),
                "precision": segmenter.engine.precision,
                "objects": objects,
                "size": args.size,
                "frames_timed": len(stamps) - warmup,
                "fps": round((len(stamps) - warmup) / seconds, 1),
                "lost_object_frames": lost,  # should be 0: a lost object's wider search costs more
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
