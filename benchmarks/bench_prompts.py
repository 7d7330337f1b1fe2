"""What prompts on other frames buy on real video: held-out DAVIS 2016 sequences, J per variant.

    python benchmarks/bench_prompts.py --davis /work/davis2016 [--model default] [--json prompts.json]

Per sequence, with the ground truth as the prompts (the middle frame is ``len // 2``):

* ``first``: the first-frame prompt only, forward (what ``vosctl segment --mask`` does);
* ``corrected``: the first-frame prompt plus one ground-truth correction on the middle frame
  (``--mask-at MID:gt.png``);
* ``both_mid``: one prompt on the middle frame, propagated to the end and back to frame 0
  (``--start-frame MID --direction both``).

J is the mean region similarity (``vosctl.eval.measures.db_eval_iou``) over the same frames for
every variant: all but the first, the middle and the last (prompt frames are not scored; DAVIS
already excludes the first and last). ``J_after_mid`` is the mean over the frames after the
middle, where the correction acts. Frames are read through ``vosctl.io.open_video`` (the same
path as the CLI, backward reading included). Prints a table, and with ``--json`` writes the
figures; ``fps`` is segmentation frames per second of each variant (load-dependent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HELD_OUT = ("bear", "car-turn", "flamingo", "lucia", "paragliding", "stroller")
VARIANTS = ("first", "corrected", "both_mid")


def run_variant(segmenter, source, gt: np.ndarray, variant: str) -> tuple[np.ndarray, float]:
    """``T x H x W`` predictions of one variant and its frames per second."""
    middle = len(gt) // 2
    if variant == "first":
        kwargs = {"labels": gt[0]}
    elif variant == "corrected":
        kwargs = {"prompts": {0: gt[0], middle: gt[middle]}}
    else:
        kwargs = {"prompts": {middle: gt[middle]}, "direction": "both", "start_frame": middle}
    predictions = np.zeros_like(gt)
    seen = np.zeros(len(gt), bool)
    start = time.perf_counter()
    for result in segmenter.track(source, **kwargs):
        predictions[result.index] = result.labels
        seen[result.index] = True
    seconds = time.perf_counter() - start
    if not seen.all():
        raise SystemExit(f"{variant}: frames {np.flatnonzero(~seen)[:5].tolist()} got no result")
    return predictions, len(gt) / seconds


def main() -> None:
    from vosctl import Segmenter
    from vosctl.eval.davis import DavisDataset
    from vosctl.eval.measures import db_eval_iou
    from vosctl.io import open_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS root (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--sequences", default=",".join(HELD_OUT), help="comma-separated (default: the held-out six)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-frames", type=int, default=0, help="only the first N frames of each sequence (smoke)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    dataset = DavisDataset(args.davis, "2016")
    segmenter = Segmenter.from_pretrained(args.model, device=args.device)
    rows = []
    for name in args.sequences.split(","):
        sequence = dataset.sequence(name, need_images=True)
        if sequence is None:
            print(f"{name}: not found under {args.davis}, skipped", file=sys.stderr)
            continue
        stems = list(sequence.frame_stems)[: args.max_frames or None]
        gt = dataset.read_annotations(sequence, stems)
        middle, last = len(gt) // 2, len(gt) - 1
        scored = [t for t in range(len(gt)) if t not in (0, middle, last)]
        after = [t for t in scored if t > middle]
        row: dict = {"sequence": name, "frames": len(gt), "middle": middle}
        folder = sequence.image_dir
        if args.max_frames:  # a folder of links to the first frames (the readers list folders)
            folder = Path(tempfile.mkdtemp(prefix=f"bench_prompts_{name}_"))
            for stem in stems:
                (folder / f"{stem}.jpg").symlink_to(sequence.image_path(stem).resolve())
        for variant in VARIANTS:
            with open_video(folder) as source:
                predictions, fps = run_variant(segmenter, source, gt, variant)
            j = db_eval_iou(gt == 1, predictions == 1)
            row[variant] = {
                "J": round(float(np.mean(j[scored])), 4),
                "J_after_mid": round(float(np.mean(j[after])), 4),
                "fps": round(fps, 2),
            }
        if folder != sequence.image_dir:
            shutil.rmtree(folder)
        rows.append(row)
        print(
            f"{name:12s} {len(gt):4d} frames  " + "  ".join(f"{v} J={row[v]['J']:.3f}" for v in VARIANTS),
            file=sys.stderr,
            flush=True,
        )
    if not rows:
        raise SystemExit("no sequence found")
    mean = {
        v: {k: round(float(np.mean([r[v][k] for r in rows])), 4) for k in ("J", "J_after_mid", "fps")} for v in VARIANTS
    }
    print(f"\n{'sequence':12s} " + " ".join(f"{v + ' J':>13s} {v + ' J>mid':>15s}" for v in VARIANTS))
    for row in [*rows, {"sequence": "mean", **mean}]:
        print(
            f"{row['sequence']:12s} " + " ".join(f"{row[v]['J']:13.3f} {row[v]['J_after_mid']:15.3f}" for v in VARIANTS)
        )
    report = {"model": segmenter.model_name, "device": segmenter.device, "sequences": rows, "mean": mean}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
