"""Calibrate the presence thresholds on TRAINING data (never on the held-out sequences).

Runs the tracker with lost detection switched off over DAVIS training sequences (the object is
present in almost every frame) and records the learned presence of the frames where the object
really is there (ground-truth IoU of the mask >= 0.5) and of the frames where it is absent or
the mask is on something else (IoU < 0.1, or no ground truth). Prints percentiles and the
thresholds they suggest:

    python benchmarks/calibrate_presence.py /work/davis2016 --model runs/default/model.pt \\
        --sequences bmx-bumps,dance-jump,dog-agility,kite-walk,motocross-bumps,soccerball
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("davis", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--sequences", required=True)
    parser.add_argument("--max-frames", type=int, default=80)
    args = parser.parse_args()

    from vosctl.presence import PresenceConfig
    from vosctl.tracker import Segmenter, SegmenterConfig

    config = SegmenterConfig(presence=PresenceConfig(lost_presence=-1.0, lost_similarity=-2.0))
    segmenter = Segmenter.from_pretrained(args.model, device="cpu", config=config)
    if not segmenter.has_presence_head:
        raise SystemExit("this model has no presence head")
    present, absent = [], []
    for name in args.sequences.split(","):
        jpgs = sorted((args.davis / "JPEGImages" / "480p" / name).glob("*.jpg"))[: args.max_frames]
        pngs = [args.davis / "Annotations" / "480p" / name / (p.stem + ".png") for p in jpgs]
        frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in jpgs]
        truth = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in pngs]
        state, _ = segmenter.init_state(frames[0], labels=truth[0].astype(np.uint8))
        for frame, gt in zip(frames[1:], truth[1:]):
            out = segmenter.step(state, frame)  # with a presence head, the score IS the presence
            pred = out.labels == 1
            union = np.logical_or(pred, gt).sum()
            iou = 1.0 if union == 0 else np.logical_and(pred, gt).sum() / union
            value = float(out.objects[1].score)
            if gt.any() and iou >= 0.5:
                present.append(value)
            elif not gt.any() or iou < 0.1:
                absent.append(value)
    report = {
        "present_frames": len(present),
        "absent_or_wrong_frames": len(absent),
        "present_percentiles": {q: round(float(np.percentile(present, q)), 3) for q in (1, 2, 5, 10, 50)}
        if present
        else {},
        "absent_percentiles": {q: round(float(np.percentile(absent, q)), 3) for q in (50, 90, 95, 99)}
        if absent
        else {},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
