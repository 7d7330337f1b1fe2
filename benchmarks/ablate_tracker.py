"""Tracker ablations on DAVIS sequences: mean J per sequence for SegmenterConfig variants.

    python benchmarks/ablate_tracker.py --davis ../davis2016 \\
        --variants base,lost_presence=0.0,bank_size=0 [--sequences a,b,...] [--model default] [--workers 2]

A variant is ``base`` or ``field=value[+field=value...]``; fields of ``PresenceConfig``
(``lost_presence``, ``found_presence``, ``lost_patience``, ...), ``MemoryConfig`` (``bank_size``,
``trusted_weight``, ``update_every``, ``min_confidence``) or ``SegmenterConfig`` itself
(``window_influence``, ``mask_threshold``, ...). Each sequence is tracked from its first mask
with the real tracker, one thread per worker; J is the official region similarity over the
frames DAVIS scores (all but the first and the last). The default sequences are the shipped
model's held-out ones. For information, never for choosing thresholds on those sequences.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace

import numpy as np

HELD_OUT = "bear,car-turn,flamingo,lucia,paragliding,stroller"


def make_config(variant: str):
    from vosctl.memory import MemoryConfig
    from vosctl.presence import PresenceConfig
    from vosctl.tracker import SegmenterConfig

    config = SegmenterConfig()
    presence_fields = {f.name for f in fields(PresenceConfig)}
    memory_fields = {f.name for f in fields(MemoryConfig)}
    for part in variant.split("+"):
        if part == "base":
            continue
        key, raw = part.split("=")
        value: float | int = float(raw) if "." in raw else int(raw)
        if key in presence_fields:
            config = replace(config, presence=replace(config.presence, **{key: value}))
        elif key in memory_fields:
            config = replace(config, memory=replace(config.memory, **{key: value}))
        else:
            config = replace(config, **{key: value})
    return config


def mean_j(job: tuple[str, str, str, str]) -> tuple[str, str, float]:
    davis, model, variant, sequence = job
    from vosctl.tracker import Segmenter
    from vosctl.train.data import DavisFrames

    segmenter = Segmenter.from_pretrained(model, device="cpu", config=make_config(variant), threads=1)
    data = DavisFrames(davis, [sequence])
    frames, masks = data.frames[0], data.masks[0]
    scores = []
    for index, result in enumerate(segmenter.track(frames, labels=masks[0])):
        if 0 < index < len(frames) - 1:
            pred, truth = result.labels > 0, masks[index] > 0
            union = np.logical_or(pred, truth).sum()
            scores.append(1.0 if union == 0 else np.logical_and(pred, truth).sum() / union)
    return variant, sequence, float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", required=True)
    parser.add_argument("--variants", default="base")
    parser.add_argument("--sequences", default=HELD_OUT)
    parser.add_argument("--model", default="default")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    variants, sequences = args.variants.split(","), args.sequences.split(",")
    for variant in variants:
        make_config(variant)  # a typo fails here, before minutes of tracking
    jobs = [(args.davis, args.model, v, s) for v in variants for s in sequences]
    table: dict[str, dict[str, float]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for variant, sequence, j in pool.map(mean_j, jobs):
            table.setdefault(variant, {})[sequence] = round(j, 4)
    for variant in variants:
        row = table[variant]
        print(json.dumps({"variant": variant, "mean_j": round(float(np.mean(list(row.values()))), 4), **row}))


if __name__ == "__main__":
    main()
