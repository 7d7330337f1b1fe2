"""Tracker ablations on DAVIS sequences: mean J per sequence for SegmenterConfig variants.

    python benchmarks/ablate_tracker.py --davis ../davis2016 \\
        --variants base,presence.lost_presence=0.0,memory.bank_size=0 \\
        [--sequences a,b,...] [--model default] [--workers 2]

A variant is ``base`` or ``KEY=VALUE[+KEY=VALUE...]``, each KEY=VALUE as ``vosctl segment --set``
takes it (``vosctl.overrides``): ``presence.lost_patience``, ``memory.trusted_weight``,
``window_influence``, ``mask_threshold``, ... Each sequence is tracked from its first mask
with the real tracker (``vosctl.train.loop.heldout_j``, training's own evaluation), one thread
per worker; J is the region similarity over the frames DAVIS scores (all but the first and the
last). The default sequences are the shipped model's held-out ones. For information, never for
choosing thresholds on those sequences.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HELD_OUT = "bear,car-turn,flamingo,lucia,paragliding,stroller"


def make_config(variant: str):
    from vosctl.overrides import apply_overrides
    from vosctl.tracker import SegmenterConfig

    return apply_overrides(SegmenterConfig(), [part for part in variant.split("+") if part != "base"])


def mean_j(job: tuple[str, str, str, str]) -> tuple[str, str, float]:
    """One sequence, one variant: training's own held-out evaluation, on the whole sequence."""
    davis, model_name, variant, sequence = job
    from vosctl.model.checkpoint import load_checkpoint
    from vosctl.threads import apply_thread_policy
    from vosctl.train.data import DavisFrames
    from vosctl.train.loop import heldout_j

    apply_thread_policy(1)  # one thread per worker process
    model, _ = load_checkpoint(model_name)
    per_sequence = heldout_j(model, DavisFrames(davis, [sequence]), None, "cpu", make_config(variant))
    return variant, sequence, per_sequence[sequence]


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
