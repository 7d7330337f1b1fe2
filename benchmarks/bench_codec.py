"""How much accuracy a stronger video compression costs: DAVIS sequences re-encoded as H.264.

    python benchmarks/bench_codec.py --davis ../davis2016 [--sequences a,b] [--models default,v3]
        [--crf 0,23,28,33] [--workers 2]

Users give vosctl compressed videos (phones, the web), while the benchmark reads DAVIS's JPEG
frames. Each sequence is encoded with libx264 (yuv420p, preset medium) at each CRF, decoded again,
and tracked from its first annotation with the real tracker (``Segmenter.track``, one thread per
worker); CRF 0 means the frames as they are (no re-encoding). Prints, per model and CRF, mean J
and F over the frames DAVIS scores (all but the first and the last) and the mean grey-level
difference the codec introduced. The default sequences are the shipped model's held-out ones.
For information: nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

HELD_OUT = "bear,car-turn,flamingo,lucia,paragliding,stroller"


def reencode(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """The frames after an H.264 round trip at ``crf`` (0: unchanged)."""
    if crf == 0:
        return frames
    import av

    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(24))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def score(job: tuple[str, str, str, int]) -> dict:
    davis, model_name, sequence, crf = job
    from vosctl.eval.measures import db_eval_boundary, db_eval_iou
    from vosctl.threads import apply_thread_policy
    from vosctl.tracker import Segmenter
    from vosctl.train.data import DavisFrames

    apply_thread_policy(1)  # one thread per worker process
    data = DavisFrames(davis, [sequence])
    frames, masks = data.frames[0], data.masks[0]
    coded = reencode(frames, crf)
    if len(coded) != len(frames):
        raise RuntimeError(f"{sequence}: {len(coded)} frames decoded of {len(frames)}")
    difference = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, coded)]))
    segmenter = Segmenter.from_pretrained(model_name, device="cpu", threads=1)
    j, f = [], []
    for index, result in enumerate(segmenter.track(coded, labels=masks[0])):
        if 0 < index < len(frames) - 1:  # DAVIS scores neither the first nor the last frame
            pred, gt = result.labels > 0, masks[index] > 0
            j.append(float(db_eval_iou(gt, pred)))
            f.append(float(db_eval_boundary(gt, pred)))
    return {"model": model_name, "sequence": sequence, "crf": crf, "J": np.mean(j), "F": np.mean(f), "diff": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--davis", required=True)
    parser.add_argument("--sequences", default=HELD_OUT)
    parser.add_argument("--models", default="default")
    parser.add_argument("--crf", default="0,23,28,33")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [
        (args.davis, model, sequence, int(crf))
        for model in args.models.split(",")
        for crf in args.crf.split(",")
        for sequence in args.sequences.split(",")
    ]
    rows: dict[tuple[str, int], list[dict]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(score, jobs):
            rows.setdefault((row["model"], row["crf"]), []).append(row)
    for (model, crf), group in rows.items():
        print(
            json.dumps(
                {
                    "model": model,
                    "crf": crf,
                    "mean_abs_difference": round(float(np.mean([r["diff"] for r in group])), 2),
                    "J": round(float(np.mean([r["J"] for r in group])), 3),
                    "F": round(float(np.mean([r["F"] for r in group])), 3),
                    **{r["sequence"]: [round(float(r["J"]), 3), round(float(r["F"]), 3)] for r in group},
                }
            )
        )


if __name__ == "__main__":
    main()
