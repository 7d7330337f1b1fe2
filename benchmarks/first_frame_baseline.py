"""The first-frame-copy baseline: every frame's "prediction" is the first-frame annotation.

    python benchmarks/first_frame_baseline.py DAVIS_ROOT RESULTS_DIR --sequences bear,car-turn
    vosctl benchmark --davis DAVIS_ROOT --split train --sequences bear,car-turn --results RESULTS_DIR --eval-only

It measures how much of a sequence's score needs no tracking at all (static objects score high),
the floor any tracker must beat; the model card reports it beside vosctl's figures.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("davis_root", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--sequences", required=True, help="comma-separated sequence names")
    args = parser.parse_args()
    for seq in args.sequences.split(","):
        annotations = sorted((args.davis_root / "Annotations" / "480p" / seq).glob("*.png"))
        frames = sorted((args.davis_root / "JPEGImages" / "480p" / seq).glob("*.jpg"))
        out = args.results / seq
        out.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            shutil.copyfile(annotations[0], out / f"{frame.stem}.png")
        print(f"{seq}: {len(frames)} frames")


if __name__ == "__main__":
    main()
