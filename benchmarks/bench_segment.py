"""End-to-end speed and memory of ``vosctl segment`` (decode + segment + write), and the cost of frame size.

    python benchmarks/bench_segment.py speed      [--frames 300] [--model default] [--objects 1,3]
                                                  [--device cpu|cuda] [--threads N] [--engines torch,onnx]
    python benchmarks/bench_segment.py memory     [--short 1000] [--long 10000]
    python benchmarks/bench_segment.py resolution [--frames 60] [--objects 1,4] [--threads N]
    python benchmarks/bench_segment.py pipeline   [--video V --mask M] [--model default] [--engines torch,onnx]
                                                  [--output png|overlay] [--repeats 3] [--threads N] [--fresh]
                                                  [--against KEY=VALUE ...]

speed: a synthetic video of textured shapes moving over a textured background; runs PNG masks
with 1 object, overlay with 1 object, PNG masks with 3 objects, and the ``--full-frame`` ablation
(search the whole frame at the crop's scale instead of a crop), each through the real CLI job in
this process. Prints fps and segment_fps (``vosctl.results.FPS_DEFINITION``: end to end, and
inside the segmenter with decode and write excluded), and for the synthetic ground truth the mean
IoU, so the crop/full-frame ratio covers both speed and accuracy. On a GPU:
``speed --device cuda --objects 1,4,16``.

memory: runs the CLI in a fresh process on a 1,000- and a 10,000-frame video and reports each
process's peak RSS: a streaming pipeline has the same peak whatever the length.

pipeline: one object, one loaded segmenter, the same clip three ways, interleaved: the engine
eager and the I/O serial (as before the traces and the I/O threads), traced and serial, traced with
decode ahead and write behind (the default now); medians of the end-to-end fps. The traces a
loaded engine made are reused by its later runs, unless ``--fresh`` loads the model again for
every run (then each run pays for its traces, as a one-shot ``vosctl segment`` does). With
``--engines torch,onnx`` each engine in turn (ONNX Runtime has no traces: its first two modes agree).
``--against KEY=VALUE`` (repeatable; a tracker setting as ``--set`` takes it) asks another question:
the default mode alone, with the default settings and with each of these in turn, interleaved.

resolution: the tracker step alone (``Segmenter.step`` after the network's crops, pastes and
merges; decode timed separately and excluded) at 854x480, 1920x1080 and 3840x2160, with 1 and 4
objects of the same pixel size (70-130 px) at every resolution, each in a fresh process that
decodes frame by frame; reports the median step time, the decode time and the process's peak
RSS. Targets: step time at 4K within 1.5x of 480p, peak memory within +150 MiB of the 480p run
(the 4K frame itself, 25 MB decoded, is part of that budget).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 854, 480
RESOLUTIONS = ((854, 480), (1920, 1080), (3840, 2160))


def _texture(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (h, w, 1))
    return np.clip(tex, 0, 255).astype(np.uint8)


def synth_video(
    path: Path,
    frames: int,
    objects: int,
    seed: int = 0,
    keep: int = 2000,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> list[np.ndarray]:
    """Write an H.264 video; return the ground-truth label maps of its first ``keep`` frames.

    Objects are 70-130 px whatever the frame size (the tracker's cost should follow them).
    """
    WIDTH, HEIGHT = width, height  # noqa: N806 - the module defaults, overridden for this video
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


def run_job(
    video: Path,
    mask: Path,
    out: Path,
    model: str,
    device: str = "cpu",
    threads: int | None = None,
    engine: str = "torch",
    search_size: int | None = None,
    **flags: bool,
) -> dict:
    from vosctl.jobs.segment import SegmentOptions, run_segment

    options = SegmentOptions(
        inputs=[str(video)],
        mask=mask,
        output=out,
        model=model,
        device=device,
        threads=threads,
        engine=engine,
        search_size=search_size,
        force=True,
        quiet=True,
        **flags,
    )
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
        counts = [int(o) for o in args.objects.split(",")]
        run = {"device": args.device, "threads": args.threads, "search_size": args.search_size}
        for objects in counts:
            video = root / f"v{objects}.mp4"
            truth = synth_video(video, args.frames, objects)
            mask = root / f"m{objects}.png"
            cv2.imwrite(str(mask), truth[0])
            if objects == counts[0]:  # warm-up (model load, oneDNN kernel selection) so no case runs cold
                run_job(video, mask, root / "warmup", args.model, png=True, **run)
                run_job(video, mask, root / "warmup", args.model, png=True, full_frame=True, **run)
            cases = [("png", {"png": True})]
            if objects == counts[0]:
                cases += [("overlay", {"overlay": True}), ("png --full-frame", {"png": True, "full_frame": True})]
            for name, flags in cases:
                out = root / f"out_{objects}_{len(rows)}"
                summary = run_job(video, mask, out, args.model, **run, **flags)
                row = {
                    "case": name,
                    "objects": objects,
                    "frames": summary["frames"],
                    "device": summary["device"],
                    "precision": summary.get("precision"),
                    "threads": summary.get("threads"),
                    # vosctl.results.FPS_DEFINITION: the same figures as `vosctl segment --json`.
                    "fps_end_to_end": summary["fps"],
                    "fps_segment_only": summary["segment_fps"],
                    "fps_decode_only": summary.get("decode_fps"),
                }
                if flags.get("png"):
                    row["mean_iou"] = round(mean_iou(out / "masks", truth), 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
        crop = next(r for r in rows if r["case"] == "png" and r["objects"] == counts[0])
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
        if args.engines:
            compare_engines(args, root, counts[0], run)


def compare_engines(args: argparse.Namespace, root: Path, objects: int, run: dict) -> None:
    """The same clip with each --engines entry, interleaved (A B A B) so load drifts hit both alike."""
    video, mask = root / f"v{objects}.mp4", root / f"m{objects}.png"
    engines = args.engines.split(",")
    for engine in engines:  # first use: export to the cache, load, warm up
        run_job(video, mask, root / "warm_engine", args.model, engine=engine, png=True, **run)
    fps: dict[str, list[float]] = {engine: [] for engine in engines}
    for _ in range(2):
        for engine in engines:
            summary = run_job(video, mask, root / f"e_{engine}", args.model, engine=engine, png=True, **run)
            fps[engine].append(summary["fps"])
            print(
                json.dumps(
                    {
                        "engine": summary.get("engine"),
                        "objects": objects,
                        "fps_end_to_end": summary["fps"],
                        "fps_segment_only": summary["segment_fps"],
                    }
                ),
                flush=True,
            )
    best = {engine: max(values) for engine, values in fps.items()}
    print(
        json.dumps(
            {
                "engine_fps_end_to_end": best,
                f"{engines[-1]}_vs_{engines[0]}": round(best[engines[-1]] / best[engines[0]], 3),
            }
        )
    )


# SegmenterConfig fields a Segmenter resolves once, at load (everything else is read per frame).
LOAD_TIME_SETTINGS = ("engine", "precision", "search_size", "window_factor")

PIPELINE_MODES = {  # name: (engine traces, oneDNN Graph fusion, template branch traced, decode ahead, write behind)
    "eager, serial (before)": (False, False, False, False, False),
    "traced, serial": (True, False, False, False, False),
    "traced, pipelined": (True, False, False, True, True),
    "traced + fused, pipelined": (True, True, False, True, True),
    "traced + fused, templates too, pipelined (now)": (True, True, True, True, True),
}
NOW = "traced + fused, templates too, pipelined (now)"


def pipeline(args: argparse.Namespace) -> None:
    """What the traced engine and the decode-ahead / write-behind threads each bring, end to end.

    One loaded segmenter runs the same clip in every mode of PIPELINE_MODES, interleaved (A B C A
    B C ...) so load drifts hit all alike; medians of ``--repeats`` runs after one warm-up round.
    The clip: ``--video`` and ``--mask`` (e.g. a DAVIS sequence), else the synthetic one of ``speed``.
    """
    import statistics

    from vosctl.jobs.segment import SegmentOptions, load_segmenter, plan_job, run_one
    from vosctl.overrides import apply_overrides

    # name -> (engine traces, fusion, templates traced, decode ahead, write behind, setting overrides)
    modes = {name: (*flags, None) for name, flags in PIPELINE_MODES.items()}
    if args.against:
        # Settings a Segmenter reads when it is made, not per frame: swapping its config would not apply them.
        fixed = [item for item in args.against if item.split("=")[0] in LOAD_TIME_SETTINGS]
        if fixed:
            sys.exit(f"--against: {', '.join(fixed)} only applies when the model loads; compare separate runs")
        now = PIPELINE_MODES[NOW]
        modes = {"traced, pipelined, default settings": (*now, None)}
        modes.update({f"traced, pipelined, {item}": (*now, item) for item in args.against})

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.video:
            video, mask = Path(args.video), Path(args.mask)
        else:
            video, mask = root / "v.mp4", root / "m.png"
            truth = synth_video(video, args.frames, 1)
            cv2.imwrite(str(mask), truth[0])
        engines = (args.engines or "torch").split(",")
        for engine in engines:
            options = SegmentOptions(
                inputs=[str(video)], mask=mask, output=root / "out", model=args.model, device=args.device,
                threads=args.threads, engine=engine, search_size=args.search_size, force=True, quiet=True,
                png=args.output == "png", overlay=args.output == "overlay",
            )  # fmt: skip
            segmenter = load_segmenter(options)
            default_config = segmenter.config
            can_fuse = getattr(segmenter.engine, "fuse", False)  # what the engine chose for this machine
            # Traces only where the engine makes them itself (fp32): autocast graphs are not traced.
            can_trace = getattr(segmenter.engine, "precision", None) == "fp32"
            fps: dict[str, list[float]] = {name: [] for name in modes}
            for repeat in range(args.repeats + 1):
                for name, (trace, fuse, templates, ahead, behind, setting) in modes.items():
                    if args.fresh:  # a new engine each run: its traces are made (or not) as in a one-shot run
                        segmenter = load_segmenter(options)
                        default_config = segmenter.config
                    segmenter.config = default_config if setting is None else apply_overrides(default_config, [setting])
                    if hasattr(segmenter.engine, "trace"):
                        segmenter.engine.trace = trace and can_trace
                        segmenter.engine.fuse = fuse and can_fuse
                        segmenter.engine.trace_templates = templates
                    segmenter.prefetch_decode, segmenter.write_behind = ahead, behind
                    shutil.rmtree(root / "out", ignore_errors=True)
                    summary = run_one(plan_job(options, video, batch=False), options, segmenter)
                    if repeat:  # round 0 warms up (oneDNN kernel choice, traces, file cache)
                        fps[name].append(summary["fps"])
            row = {
                "video": video.name if args.video else "synthetic 854x480",
                "output": args.output,
                "model": segmenter.model_name,
                "engine": summary.get("engine"),
                "threads": summary.get("threads"),
                "frames": summary["frames"],
                "fps_end_to_end_median": {name: round(statistics.median(v), 1) for name, v in fps.items()},
                "runs": fps,
            }
            print(json.dumps(row), flush=True)


MEMORY_CHILD = """
import json, sys
from pathlib import Path
def peak_rss_mib():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    with open("/proc/self/status") as status:
        return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM"))
from vosctl.jobs.segment import SegmentOptions, run_segment
options = SegmentOptions(inputs=[sys.argv[1]], mask=Path(sys.argv[2]), output=Path(sys.argv[3]), png=True,
                         model=sys.argv[4], force=True, quiet=True)
(summary,) = list(run_segment(options))
print(json.dumps({"frames": summary["frames"], "fps": summary["fps"],
                  "peak_rss_mib": peak_rss_mib()}))
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


RESOLUTION_CHILD = """
import json, statistics, sys, time
import cv2
def peak_rss_mib():
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak.
    with open("/proc/self/status") as status:
        return next(round(int(line.split()[1]) / 1024, 1) for line in status if line.startswith("VmHWM"))
from vosctl import Segmenter
from vosctl.io import open_video
video, mask, model, device, threads = sys.argv[1:6]
segmenter = Segmenter.from_pretrained(model, device=device, threads=int(threads) if threads != "-" else None)
labels = cv2.imread(mask, cv2.IMREAD_UNCHANGED)
steps, decodes = [], []
with open_video(video) as source:
    frames = iter(source)
    state, _ = segmenter.init_state(next(frames).rgb, labels=labels)
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        decodes.append(time.perf_counter() - start)
        if frame is None:
            break
        start = time.perf_counter()
        segmenter.step(state, frame.rgb)
        steps.append(time.perf_counter() - start)
warm = steps[3:] or steps
print(json.dumps({"step_ms": round(1000 * statistics.median(warm), 2),
                  "step_ms_mean": round(1000 * statistics.fmean(warm), 2),
                  "decode_ms": round(1000 * statistics.fmean(decodes[:-1]), 2),
                  "frames": len(steps) + 1, "threads": segmenter.threads, "precision": segmenter.engine.precision,
                  "peak_rss_mib": peak_rss_mib()}))
"""


def resolution(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for objects in (int(o) for o in args.objects.split(",")):
            for width, height in RESOLUTIONS:
                video = root / f"r{width}x{height}_{objects}.mp4"
                truth = synth_video(video, args.frames, objects, keep=1, width=width, height=height)
                mask = root / f"r{width}x{height}_{objects}.png"
                cv2.imwrite(str(mask), truth[0])
                threads = "-" if args.threads is None else str(args.threads)
                done = subprocess.run(
                    [sys.executable, "-c", RESOLUTION_CHILD, str(video), str(mask), args.model, args.device, threads],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                row = {"width": width, "height": height, "objects": objects, **json.loads(done.stdout.splitlines()[-1])}
                rows.append(row)
                print(json.dumps(row), flush=True)
                video.unlink()
    for objects in sorted({r["objects"] for r in rows}):
        small = next(r for r in rows if r["objects"] == objects and r["width"] == 854)
        big = next(r for r in rows if r["objects"] == objects and r["width"] == 3840)
        print(
            json.dumps(
                {
                    "objects": objects,
                    "step_4k_vs_480p": round(big["step_ms"] / small["step_ms"], 2),
                    "peak_rss_4k_minus_480p_mib": round(big["peak_rss_mib"] - small["peak_rss_mib"], 1),
                    "targets": {"step_ratio_max": 1.5, "extra_memory_mib_max": 150},
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "memory", "resolution", "pipeline"])
    parser.add_argument("--frames", type=int, default=None, help="default: 300 (speed), 60 (resolution)")
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=10000)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="default: the vosctl thread policy")
    parser.add_argument("--objects", default=None, help="default: 1,3 (speed), 1,4 (resolution)")
    parser.add_argument("--engines", default=None, help="speed: also compare engines end to end, e.g. torch,onnx")
    parser.add_argument("--search-size", type=int, default=None, help="speed: the search crop (default: the model's)")
    parser.add_argument("--video", default=None, help="pipeline: a real clip instead of the synthetic one")
    parser.add_argument("--mask", default=None, help="pipeline: the first-frame mask of --video")
    parser.add_argument("--output", choices=["png", "overlay"], default="png", help="pipeline: what is written")
    parser.add_argument("--repeats", type=int, default=3, help="pipeline: interleaved rounds after the warm-up")
    parser.add_argument(
        "--fresh", action="store_true", help="pipeline: load the model for every run (trace warm-up included)"
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        help="pipeline: time the default mode with this tracker setting (KEY=VALUE) beside the defaults; repeatable",
    )
    args = parser.parse_args()
    if args.mode == "pipeline":
        args.frames = args.frames or 150
        pipeline(args)
    elif args.mode == "speed":
        args.frames, args.objects = args.frames or 300, args.objects or "1,3"
        speed(args)
    elif args.mode == "resolution":
        args.frames, args.objects = args.frames or 60, args.objects or "1,4"
        resolution(args)
    else:
        memory(args)


if __name__ == "__main__":
    main()
