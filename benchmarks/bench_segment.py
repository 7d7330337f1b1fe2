"""End-to-end speed and memory of ``vosctl segment`` (decode + segment + write), 854x480.

    python benchmarks/bench_segment.py speed  [--frames 300] [--model default]
    python benchmarks/bench_segment.py memory [--short 1000] [--long 10000]

speed: a synthetic video of textured shapes moving over a textured background; runs PNG masks
with 1 object, overlay with 1 object, PNG masks with 3 objects, and the ``--full-frame`` ablation
(search the whole frame at the crop's scale instead of a crop), each through the real CLI job in
this process. Prints fps, and for the synthetic ground truth the mean IoU, so the crop/full-frame
ratio covers both speed and accuracy.

memory: runs the CLI in a fresh process on a 1,000- and a 10,000-frame video and reports each
process's peak RSS: a streaming pipeline has the same peak whatever the length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 854, 480


def _texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (h, w, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def synth_video(path: Path, frames: int, objects: int, seed: int = 0, keep: int = 2000) -> list[np.ndarray]:
    """Write an H.264 video; return the ground-truth label maps of its first ``keep`` frames."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, HEIGHT, WIDTH, 8)
    sizes = [(int(rng.integers(70, 130)), int(rng.integers(70, 130))) for _ in range(objects)]
    textures = [_texture(rng, h, w, 4) for (w, h) in sizes]
    starts = [(rng.uniform(100, WIDTH - 200), rng.uniform(80, HEIGHT - 200)) for _ in range(objects)]
    phases = rng.uniform(0, 2 * np.pi, objects)
    truth: list[np.ndarray] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t in range(frames):
            frame = background.copy()
            labels = np.zeros((HEIGHT, WIDTH), np.uint8)
            for k in range(objects):
                (w, h), (x0, y0) = sizes[k], starts[k]
                x = int(x0 + 80 * np.sin(t / 40 + phases[k]))
                y = int(y0 + 50 * np.cos(t / 55 + phases[k]))
                frame[y : y + h, x : x + w] = textures[k]
                labels[y : y + h, x : x + w] = k + 1
            if len(truth) < keep:
                truth.append(labels)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truth


def run_job(video: Path, mask: Path, out: Path, model: str, **flags: bool) -> dict:
    from vosctl.jobs.segment import SegmentOptions, run_segment

    options = SegmentOptions(inputs=[str(video)], mask=mask, output=out, model=model, force=True, quiet=True, **flags)
    (result,) = list(run_segment(options))
    if isinstance(result, Exception):
        raise result
    return result


def mean_iou(masks_dir: Path, truth: list[np.ndarray]) -> float:
    scores = []
    for index in range(1, len(truth)):
        pred = np.array(Image.open(masks_dir / f"{index:05d}.png"))
        for object_id in np.unique(truth[index])[1:]:
            p, g = pred == object_id, truth[index] == object_id
            scores.append(np.logical_and(p, g).sum() / max(1, np.logical_or(p, g).sum()))
    return float(np.mean(scores))


def speed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for objects in (1, 3):
            video = root / f"v{objects}.mp4"
            truth = synth_video(video, args.frames, objects)
            mask = root / f"m{objects}.png"
            cv2.imwrite(str(mask), truth[0])
            if objects == 1:  # warm-up (model load, oneDNN kernel selection) so no case runs cold
                run_job(video, mask, root / "warmup", args.model, png=True)
                run_job(video, mask, root / "warmup", args.model, png=True, full_frame=True)
            cases = [("png", {"png": True})]
            if objects == 1:
                cases += [("overlay", {"overlay": True}), ("png --full-frame", {"png": True, "full_frame": True})]
            for name, flags in cases:
                out = root / f"out_{objects}_{len(rows)}"
                start = time.perf_counter()
                summary = run_job(video, mask, out, args.model, **flags)
                seconds = time.perf_counter() - start
                row = {
                    "case": name,
                    "objects": objects,
                    "frames": summary["frames"],
                    "fps_end_to_end": round(summary["frames"] / seconds, 1),
                    "fps_segment_only": summary["segment_fps"],
                }
                if flags.get("png"):
                    row["mean_iou"] = round(mean_iou(out / "masks", truth), 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
        crop = next(r for r in rows if r["case"] == "png" and r["objects"] == 1)
        full = next(r for r in rows if r["case"] == "png --full-frame")
        print(
            json.dumps(
                {
                    "crop_vs_full_frame_speed_ratio": round(crop["fps_end_to_end"] / full["fps_end_to_end"], 2),
                    "crop_iou": crop["mean_iou"],
                    "full_frame_iou": full["mean_iou"],
                }
            )
        )


MEMORY_CHILD = """
import json, resource, sys
from pathlib import Path
from vosctl.jobs.segment import SegmentOptions, run_segment
options = SegmentOptions(inputs=[sys.argv[1]], mask=Path(sys.argv[2]), output=Path(sys.argv[3]), png=True,
                         model=sys.argv[4], force=True, quiet=True)
(summary,) = list(run_segment(options))
print(json.dumps({"frames": summary["frames"], "fps": summary["fps"],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for frames in (args.short, args.long):
            video = root / f"long{frames}.mp4"
            truth = synth_video(video, frames, 1, keep=1)
            mask = root / "m.png"
            cv2.imwrite(str(mask), truth[0])
            del truth
            out = (
                subprocess.run(
                    [sys.executable, "-c", MEMORY_CHILD, str(video), str(mask), str(root / f"out{frames}"), args.model],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            print(out, flush=True)
            video.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "memory"])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=10000)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    speed(args) if args.mode == "speed" else memory(args)


if __name__ == "__main__":
    main()
