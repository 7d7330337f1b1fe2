"""Memory and speed of reading (and segmenting) a long video backwards vs forwards, 854x480.

    python benchmarks/bench_reverse.py read    [--frames 10000] [--keyint 250]
    python benchmarks/bench_reverse.py segment [--frames 10000] [--keyint 250] [--model default]

Writes a synthetic H.264 video (a textured square moving over a textured background; x264's
usual keyframe interval of 250 frames unless ``--keyint``), then runs each case in a fresh
process and reports its peak RSS (``ru_maxrss``) and time:

read:    decoding every frame forward (``open_video``) vs backward (``vosctl.io.reverse.read_backward``,
         chunks of at most 48 MiB of RGB frames, seeking to keyframes).
segment: ``vosctl segment --png --track-json`` forward from frame 0 vs ``--start-frame LAST
         --direction backward`` vs ``--start-frame MIDDLE --direction both`` (the backward
         results are spilled to disk and replayed in frame order).

Target (issue #12): the backward peak within +100 MiB of the forward one on 10,000 frames.
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

import cv2
import numpy as np

WIDTH, HEIGHT = 854, 480


def _texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (h, w, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def synth_video(path: Path, frames: int, keyint: int, masks: dict[int, Path]) -> None:
    """Write the video; save the ground-truth mask of each frame in ``masks`` (frame -> PNG path)."""
    import av

    rng = np.random.default_rng(0)
    background = _texture(rng, HEIGHT, WIDTH, 8)
    square = _texture(rng, 100, 100, 4)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18", "x264-params": f"keyint={keyint}:min-keyint={keyint}"}
        for t in range(frames):
            x, y = int(377 + 250 * np.sin(t / 40)), int(190 + 120 * np.cos(t / 55))
            frame = background.copy()
            frame[y : y + 100, x : x + 100] = square
            if t in masks:
                labels = np.zeros((HEIGHT, WIDTH), np.uint8)
                labels[y : y + 100, x : x + 100] = 255
                cv2.imwrite(str(masks[t]), labels)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


READ_CHILD = """
import json, resource, sys, time
from vosctl.io import open_video
from vosctl.io.reverse import read_backward
path, direction = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with open_video(path) as source:
    frames = source if direction == "forward" else read_backward(source, 10**9)
    count = sum(1 for _ in frames)
seconds = time.perf_counter() - start
print(json.dumps({"read": direction, "frames": count, "fps": round(count / seconds, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""

SEGMENT_CHILD = """
import json, resource, sys
from pathlib import Path
from vosctl.jobs.segment import SegmentOptions, run_segment
video, mask, start, direction, out, model = sys.argv[1:7]
options = SegmentOptions(inputs=[video], mask=Path(mask), start_frame=int(start), direction=direction,
                         output=Path(out), png=True, track_json=True, model=model, force=True, quiet=True)
(summary,) = list(run_segment(options))
if not isinstance(summary, dict):
    raise SystemExit(str(summary))
print(json.dumps({"segment": direction, "start_frame": int(start), "frames": summary["frames"],
                  "fps": summary["fps"],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def child(program: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["read", "segment"])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--keyint", type=int, default=250)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    last, middle = args.frames - 1, args.frames // 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video = root / "long.mp4"
        masks = {t: root / f"m{t}.png" for t in (0, middle, last)}
        started = time.perf_counter()
        synth_video(video, args.frames, args.keyint, masks)
        print(f"wrote {args.frames} frames in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if args.mode == "read":
            forward = child(READ_CHILD, str(video), "forward")
            backward = child(READ_CHILD, str(video), "backward")
        else:
            cases = {"forward": 0, "backward": last, "both": middle}
            runs = {
                d: child(SEGMENT_CHILD, str(video), str(masks[s]), str(s), d, str(root / f"out_{d}"), args.model)
                for d, s in cases.items()
            }
            forward, backward = runs["forward"], runs["backward"]
            print(
                json.dumps({"both_minus_forward_mib": round(runs["both"]["peak_rss_mib"] - forward["peak_rss_mib"], 1)})
            )
        extra = backward["peak_rss_mib"] - forward["peak_rss_mib"]
        print(json.dumps({"backward_minus_forward_mib": round(extra, 1), "target_mib": 100, "ok": extra <= 100}))


if __name__ == "__main__":
    main()
