#!/usr/bin/env python3
"""Train a config on a lent GPU machine inside a fixed wall-clock budget (one call of the device tool).

    python3 scripts/train_on_device.py CONFIG PACKED OUT --budget-s 420 [--override '{"batch_size": 8}']
        [--unpacked DIR]

Two runs can share one machine (the GPU is mostly idle; the batch builders set the pace): unpack
once with ``unpack_training_data.py PACKED DIR``, then start each run with ``--unpacked DIR`` and
half the ``loader_workers``.

1. Unpack PACKED (``pack_training_data.py``'s output; held-out sequences were never packed).
2. Point the config's data at it and its run folder at OUT/run (epoch exports land there, so a run
   cut off by the call's limit still returns its last model.pt).
3. Train with a deadline: at the end of the warm-up (whose learning rate does not depend on the
   total number of steps) the run times the warm-up's second half and sets ``steps`` so that it ends
   inside the budget, ``--margin-s`` before it (``train(deadline=...)``). Bit for bit the run a
   config with that many steps would have made (``run/config.json`` records it), in one process.
   The config's ``steps`` is the most it will take.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

START = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("packed", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for all of it")
    parser.add_argument("--margin-s", type=float, default=25.0, help="kept free for the last export")
    parser.add_argument("--override", default="{}", help="JSON of config fields to replace (tests, dry runs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--unpacked", type=Path, help="PACKED is already unpacked here: use it as is")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vosctl.train.loop import TrainConfig, read_log, train

    data = args.unpacked or Path("/tmp/vosctl-data")
    if args.unpacked is None:
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("unpack_training_data.py")), str(args.packed), str(data)],
            check=True,
        )
    cfg = TrainConfig.from_json(args.config)
    cfg = dataclasses.replace(
        cfg,
        davis_root=str(data / "davis"),
        static_root=str(data / "duts"),
        run_dir=str(args.out / "run"),
        **json.loads(args.override),
    )
    if cfg.warmup_steps < 20:
        sys.exit("calibration times the warm-up's second half: it needs warmup_steps >= 20")
    print(f"unpacked in {time.monotonic() - START:.0f} s", flush=True)

    deadline = START + args.budget_s - args.margin_s
    train(cfg, device=args.device, resume=False, deadline=deadline)
    # config.json holds the schedule's steps; a run cut at its deadline ("deadline" event) did fewer.
    steps = next(e["step"] for e in reversed(read_log(cfg.run_dir)) if e["event"] == "done")
    print(f"done in {time.monotonic() - START:.0f} s: {steps} steps", flush=True)


if __name__ == "__main__":
    main()
