"""Aggregate throughput of a batch: ``--workers N`` against the best single process.

    python benchmarks/bench_batch.py [--clips 8] [--frames 300] [--workers 2] [--json out.json]

Makes ``--clips`` synthetic 854x480 H.264 clips (a textured object moving over a textured
background, with its first-frame mask) and a manifest, then times the real CLI on the whole batch:

* one process, one thread (``OMP_NUM_THREADS=1``);
* one process, all the cores (``OMP_NUM_THREADS=<cores>``);
* ``--workers N`` (each worker gets ``cores // N`` threads).

Each figure is total frames / wall seconds of the whole command (start-up and model loading
included, as a user sees it; use enough frames that they are small). The target (issue #10):
``--workers 2`` on 2 cores >= 0.9x the best single-process figure. Run it on an idle machine:
figures taken while other work runs are meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
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
REPO = Path(__file__).resolve().parents[1]


def _texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 10, (h, w, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def make_clip(video: Path, mask: Path, frames: int, seed: int) -> None:
    """An object (110x90) drifting over a background; its first-frame mask as a binary PNG."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, HEIGHT, WIDTH, 8)
    patch = _texture(rng, 90, 110, 4)
    x0, y0 = rng.uniform(150, WIDTH - 300), rng.uniform(100, HEIGHT - 220)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t in range(frames):
            x, y = int(x0 + 90 * np.sin(t / 30)), int(y0 + 50 * np.cos(t / 45))
            rgb = background.copy()
            rgb[y : y + 90, x : x + 110] = patch
            if t == 0:
                labels = np.zeros((HEIGHT, WIDTH), np.uint8)
                labels[y : y + 90, x : x + 110] = 255
                Image.fromarray(labels).save(mask)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def run(manifest: Path, threads: int, workers: int | None, frames: int) -> dict[str, object]:
    args = [sys.executable, "-m", "vosctl.cli", "segment", "--manifest", str(manifest), "--png", "--force", "-q"]
    if workers:
        args += ["--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_batch: {' '.join(args)} failed:\n{done.stderr}")
    return {"threads": threads, "workers": workers, "seconds": round(seconds, 2), "fps": round(frames / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300, help="frames per clip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from vosctl.threads import available_cores

    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="vosctl-bench-batch-") as tmp:
        root = Path(tmp)
        rows = ["input,mask,output"]
        for i in range(args.clips):
            make_clip(root / f"clip{i}.mp4", root / f"clip{i}.png", args.frames, seed=i)
            rows.append(f"clip{i}.mp4,clip{i}.png,out/clip{i}")
        manifest = root / "jobs.csv"
        manifest.write_text("\n".join(rows) + "\n")
        total = args.clips * args.frames
        singles = [run(manifest, 1, None, total)]
        if cores > 1:
            singles.append(run(manifest, cores, None, total))
        parallel = run(manifest, cores, args.workers, total)
    best = max(singles, key=lambda r: float(r["fps"]))  # type: ignore[arg-type]
    ratio = float(parallel["fps"]) / float(best["fps"])  # type: ignore[arg-type]
    report = {
        "cores": cores,
        "clips": args.clips,
        "frames_per_clip": args.frames,
        "size": f"{WIDTH}x{HEIGHT}",
        "single_process": singles,
        "best_single_fps": best["fps"],
        "workers": parallel,
        "ratio": round(ratio, 3),
        "target": ">= 0.9",
        "load_average_at_end": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
