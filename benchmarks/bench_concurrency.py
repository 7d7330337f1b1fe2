"""Throughput of P ``vosctl segment`` processes running side by side (P = 1, 2, 4) on the same clips.

    python benchmarks/bench_concurrency.py [--frames 300] [--processes 1,2,4] [--policy share]
                                           [--clips a.mp4,b.mp4 --masks a.png,b.png] [--model default]

Every process is the real CLI (``python -m vosctl.cli segment --json``) on the same clip(s) (a
synthetic 854x480 video with one object unless ``--clips`` are given), writing PNG masks to its
own folder. All P processes of a row start together.

``--policy`` says how each process gets its threads:

* ``share`` (default): ``--threads max(1, cores // P)``: the processes split the cores, what a
  batch runner or ``xargs -P`` user should do (``vosctl.threads.share_of_cores``);
* ``default``: no ``--threads`` and ``OMP_NUM_THREADS`` removed from the environment: vosctl's
  own rule (the cores not busy with other processes) has to avoid the collapse by itself;
* ``all``: ``--threads cores`` in every process: the oversubscribed case, for reference.

Per row: each process's end-to-end fps (``vosctl.results.FPS_DEFINITION``, model loading
excluded), ``aggregate_fps`` = their sum (the processes overlap: same clips, same threads), and
``wall_fps`` = all frames / wall-clock seconds of the whole row (model loading included). The last
line compares each P with the best single-process figure; the target is aggregate >= 0.9x best
single for P = 2 and 4. The single-process figure is the best of P = 1 with every core and with
one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segment import synth_video  # noqa: E402

from vosctl.threads import available_cores, share_of_cores  # noqa: E402


def run_row(
    processes: int, policy: str, clips: list[tuple[Path, Path]], root: Path, model: str, threads: int | None = None
) -> dict:
    cores = available_cores()
    env = dict(os.environ)
    extra: list[str] = []
    if threads is not None:
        extra = ["--threads", str(threads)]
    elif policy == "share":
        threads = share_of_cores(processes, cores)
        extra = ["--threads", str(threads)]
    elif policy == "all":
        threads = cores
        extra = ["--threads", str(threads)]
    else:  # the default rule decides in each process
        threads = None
        env.pop("OMP_NUM_THREADS", None)
    started = time.perf_counter()
    running = []
    for p in range(processes):
        command = [sys.executable, "-m", "vosctl.cli", "segment", "--json", "--quiet", "--png", "--force"]
        command += ["--device", "cpu", "--model", model, *extra]
        command += ["--mask-pattern", "{path}.png", "-o", str(root / f"P{processes}-{p}")]
        command += [str(clip) for clip, _ in clips]
        running.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    summaries = []
    for proc in running:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a segment process failed: {err.strip()}")
        summaries.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    wall = time.perf_counter() - started
    per_process = []
    for runs in summaries:
        frames = sum(r["frames"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        per_process.append({"frames": frames, "fps": round(frames / seconds, 2), "threads": runs[0].get("threads")})
    total_frames = sum(p["frames"] for p in per_process)
    return {
        "processes": processes,
        "policy": policy,
        "threads_each": threads if threads is not None else [p["threads"] for p in per_process],
        "fps_each": [p["fps"] for p in per_process],
        "aggregate_fps": round(sum(p["fps"] for p in per_process), 2),
        "wall_fps": round(total_frames / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--policy", choices=["share", "default", "all"], default="share")
    parser.add_argument("--clips", default=None, help="comma-separated videos (default: one synthetic clip)")
    parser.add_argument("--masks", default=None, help="their first-frame masks, in the same order")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips: list[tuple[Path, Path]] = []
        if args.clips:
            masks = (args.masks or "").split(",")
            for index, (clip, mask) in enumerate(zip(args.clips.split(","), masks, strict=True)):
                local = root / f"clip{index}{Path(clip).suffix}"
                local.symlink_to(Path(clip).resolve())
                (root / f"{local.name}.png").symlink_to(Path(mask).resolve())
                clips.append((local, root / f"{local.name}.png"))
        else:
            video = root / "clip.mp4"
            truth = synth_video(video, args.frames, 1, keep=1)
            cv2.imwrite(str(root / "clip.mp4.png"), truth[0])
            clips.append((video, root / "clip.mp4.png"))
        print(json.dumps({"cores": available_cores(), "load_average": os.getloadavg()}), flush=True)
        rows = []
        counts = [int(p) for p in args.processes.split(",")]
        for processes in counts:
            # The single-process reference uses every core (what one run alone should do) and,
            # on a multi-core machine, also one thread: the best of the two is "best single".
            policy = "share" if processes == 1 and args.policy != "default" else args.policy
            rows.append(run_row(processes, policy, clips, root, args.model))
            print(json.dumps(rows[-1]), flush=True)
            if processes == 1 and policy == "share" and available_cores() > 1:
                rows.append(run_row(1, "share", clips, root, args.model, threads=1))
                print(json.dumps(rows[-1]), flush=True)
        best_single = max((r["aggregate_fps"] for r in rows if r["processes"] == 1), default=None)
        if best_single:
            ratios = {
                f"P{r['processes']} threads {r['threads_each']}": round(r["aggregate_fps"] / best_single, 3)
                for r in rows
            }
            print(json.dumps({"best_single_fps": best_single, "aggregate_vs_best_single": ratios, "target": 0.9}))


if __name__ == "__main__":
    main()
