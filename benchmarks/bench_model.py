"""Network cost per frame in every precision, and which one ``precision="auto"`` picks here.

    python benchmarks/bench_model.py [--model default] [--threads N] [--iters 100] [--device cpu]
                                     [--objects 1,2,4] [--precisions fp32,bf16] [--onnx] [--eager] [--parts]
                                     [--mask-region 0.667] [--fusion]

Runs the tracker's engine (BN-fused model, channels-last, autocast as the tracker uses it) on
random search crops, for 1, 2 and 4 objects, in fp32 and bf16 (and fp16 on CUDA) whether or not
the hardware has them natively, so the cost of an emulated precision is visible. The template
branch runs once per object at the first frame and is excluded, as in tracking. The first line
says what "auto" chose and why (the capabilities it saw); then one JSON line per case with
milliseconds per forward (outputs copied to the host, as the tracker needs them) and fps. On CPU
in fp32 the engine runs its TorchScript traces (``engine: traced``); ``--eager`` times the eager
engine beside it, interleaved. ``--parts`` adds where an fp32 forward's time goes, part by part
(the eager engine with timing hooks on the network's layers; see :func:`time_parts`).
``--fusion`` times the trace without oneDNN Graph fusion (``Engine(fuse=False)``) beside the
default fused one, interleaved. ``--mask-region F`` also times each case with the mask path on
the crop's central F x F (what the tracker runs for objects well inside their window,
``SegmenterConfig.mask_region``), interleaved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

# The lent GPU machines run the working tree without installing it: import the package from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vosctl.engine import TRACE_AFTER_USES, Engine, choose_precision, detect_capabilities, pick_device
from vosctl.geometry import mask_region
from vosctl.model.checkpoint import load_checkpoint
from vosctl.threads import apply_thread_policy


def measure(
    engine: Engine, objects: int, iters: int, size: int, region: tuple[int, int, int, int] | None = None
) -> float:
    """Seconds per batched search forward of ``size`` x ``size`` crops (inputs on the device; outputs copied back)."""
    cfg = engine.config
    device = engine.torch_device
    generator = torch.Generator().manual_seed(0)
    search = (torch.rand(objects, 3, size, size, generator=generator) * 255).to(device)
    search = search.contiguous(memory_format=torch.channels_last)
    template = (torch.rand(objects, cfg.template_size, cfg.template_size, 3, generator=generator) * 255).byte()
    template_mask = torch.ones(objects, cfg.template_size, cfg.template_size)
    embedding = engine.embed(template.numpy(), template_mask.numpy())
    prior = torch.zeros(objects, 1, size, size, device=device)
    # Warm-up: the trace (made at the TRACE_AFTER_USES-th call), TorchScript's profiling runs and
    # oneDNN / cuDNN kernel selection all happen before the timed calls.
    for _ in range(max(TRACE_AFTER_USES + 5, iters // 10)):
        engine.search_tensors(search, embedding, prior, None, region)
    start = time.perf_counter()
    for _ in range(iters):
        engine.search_tensors(search, embedding, prior, None, region)  # ends with the host copy (a sync)
    return (time.perf_counter() - start) / iters


def measure_host(engine: Engine, objects: int, iters: int, size: int) -> float:
    """Seconds per search from host (numpy) crops, as the CPU tracker calls it: comparable across engines."""
    import numpy as np

    cfg = engine.config
    rng = np.random.default_rng(0)
    search = rng.integers(0, 256, (objects, size, size, 3), dtype=np.uint8)
    template = rng.integers(0, 256, (objects, cfg.template_size, cfg.template_size, 3), dtype=np.uint8)
    embedding = engine.embed(template, np.ones((objects, cfg.template_size, cfg.template_size), np.float32))
    prior = np.zeros((objects, size, size), np.uint8)
    bias = np.zeros((objects, 1, size // cfg.feature_stride, size // cfg.feature_stride), np.float32)
    for _ in range(max(3, iters // 10)):
        engine.search(search, embedding, prior, bias)
    start = time.perf_counter()
    for _ in range(iters):
        engine.search(search, embedding, prior, bias)
    return (time.perf_counter() - start) / iters


# The network's layers grouped into the parts of a search forward (module name prefix -> part).
# Whatever no hook sees (correlation, interpolations, the dynamic kernels, the appearance check,
# the host copy) is reported as "other".
PARTS = {
    "backbone": "backbone",
    "neck": "neck",
    "head": "score head + kernel controller",
    "score_out": "score head + kernel controller",
    "controller": "score head + kernel controller",
    "lateral16": "FPN (laterals, smooth8)",
    "lateral8": "FPN (laterals, smooth8)",
    "lateral4": "FPN (laterals, smooth8)",
    "smooth8": "FPN (laterals, smooth8)",
    "mask_tower": "mask tower (stride 4)",
    "fine": "fine (stride 2)",
    "presence": "presence",
}


def time_parts(engine: Engine, objects: int, iters: int, size: int) -> dict[str, float]:
    """Milliseconds per search forward spent in each part (eager; hooks time every layer call).

    The backbone is timed block by block (the tracker calls ``forward_taps``, which no hook on the
    backbone itself would see). Hooks add a little per-call overhead, so parts sum to slightly
    more than an unhooked eager forward.
    """
    spent: dict[str, float] = defaultdict(float)
    started: dict[str, float] = {}
    handles = []
    model = engine.model
    modules = [(f"backbone.{i}", block) for i, block in enumerate(model.backbone.features)]
    modules += [(name, module) for name, module in model.named_children() if name != "backbone"]
    for name, module in modules:
        part = PARTS.get(name.split(".")[0], name)

        def before(_module, _inputs, name=name):
            started[name] = time.perf_counter()

        def after(_module, _inputs, _output, name=name, part=part):
            spent[part] += time.perf_counter() - started[name]

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        measure(engine, objects, max(3, iters // 10), size)  # warm-up (its hook times are dropped next)
        spent.clear()
        total = measure(engine, objects, iters, size) * iters
    finally:
        for handle in handles:
            handle.remove()
    parts = {part: seconds / iters * 1000 for part, seconds in spent.items()}
    parts["other"] = max(0.0, total / iters * 1000 - sum(parts.values()))
    parts["total"] = total / iters * 1000
    return {part: round(ms, 2) for part, ms in parts.items()}


def compare_onnx(model, threads: int, objects: list[int], iters: int, size: int) -> None:
    """torch fp32 vs ONNX Runtime on CPU, interleaved per object count so load drifts hit both alike."""
    from vosctl.onnx_engine import OrtEngine

    start = time.perf_counter()
    ort_engine = OrtEngine(model, threads=threads)
    print(json.dumps({"onnx_export_and_load_s": round(time.perf_counter() - start, 1), "cache": str(ort_engine.path)}))
    torch_engine = Engine(model, device="cpu", precision="fp32")
    for count in objects:
        t_torch = measure_host(torch_engine, count, iters, size)
        t_ort = measure_host(ort_engine, count, iters, size)
        row = {"objects": count, "torch_fp32_ms": round(t_torch * 1000, 2), "onnxruntime_ms": round(t_ort * 1000, 2)}
        row["onnx_vs_torch_time"] = round(t_ort / t_torch, 3)
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=None, help="default: the vosctl thread policy")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--objects", default="1,2,4")
    parser.add_argument("--precisions", default=None, help="default: fp32,bf16 (+fp16 on CUDA)")
    parser.add_argument("--onnx", action="store_true", help="also compare ONNX Runtime with torch fp32 (CPU)")
    parser.add_argument("--search-size", type=int, help="search crop side; default: the one the tracker uses")
    parser.add_argument("--eager", action="store_true", help="also time the eager engine beside the traced one")
    parser.add_argument(
        "--fusion", action="store_true", help="also time the trace without oneDNN Graph fusion beside the fused one"
    )
    parser.add_argument("--parts", action="store_true", help="also split an eager fp32 forward's time into its parts")
    parser.add_argument(
        "--mask-region", type=float, default=None, help="also time the mask path on the crop's central F x F"
    )
    args = parser.parse_args()
    threads = apply_thread_policy(args.threads)
    device = pick_device(args.device)
    capabilities = detect_capabilities(device)
    auto = choose_precision("auto", device, capabilities)
    precisions = (args.precisions or ("fp32,bf16,fp16" if device.type == "cuda" else "fp32,bf16")).split(",")
    print(
        json.dumps(
            {
                "device": str(device),
                "threads": threads,
                "auto_precision": auto,
                "cpu_native_bf16": capabilities.cpu_native_bf16,
                "onednn_max_isa": capabilities.onednn_max_isa,
                "cuda_capability": capabilities.cuda_capability,
            }
        ),
        flush=True,
    )
    model, meta = load_checkpoint(args.model)
    size = args.search_size or model.config.tracking_search_size  # the crop the tracker would use
    rows = []
    for precision in precisions:
        engines = {"traced": Engine(model, device=str(device), precision=precision, capabilities=capabilities)}
        if not engines["traced"].trace:  # traces are made on CPU in fp32 only
            engines = {"eager": engines["traced"]}
        else:
            if args.fusion:
                engines["traced, no fusion"] = Engine(model, str(device), precision, capabilities, fuse=False)
            if args.eager:
                engines["eager"] = Engine(model, str(device), precision, capabilities, trace=False)
        regions: list[tuple[int, int, int, int] | None] = [None]
        if args.mask_region:
            centred = (size * 0.4, size * 0.4, size * 0.2, size * 0.2)  # a box well inside any central region
            regions.append(mask_region((size, size), [centred], args.mask_region, 0.0))
        for objects in (int(o) for o in args.objects.split(",")):
            for mode, engine in engines.items():  # interleaved per object count: drifts hit all alike
                for region in regions:
                    seconds = measure(engine, objects, args.iters, size, region)
                    rows.append(
                        {
                            "search_size": size,
                            "precision": precision,
                            "auto_choice": precision == auto,
                            "engine": mode,
                            "fused": mode == "traced" and engine.fuse,
                            "mask_region": region,
                            "objects": objects,
                            "ms_per_frame": round(seconds * 1000, 2),
                            "fps": round(1 / seconds, 1),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    if args.parts:
        eager = Engine(model, str(device), "fp32", capabilities, trace=False)
        for objects in (int(o) for o in args.objects.split(",")):
            parts = time_parts(eager, objects, args.iters, size)
            print(json.dumps({"search_size": size, "objects": objects, "engine": "eager, hooked", "parts_ms": parts}))
    if args.onnx:
        compare_onnx(model, threads, [int(o) for o in args.objects.split(",")], args.iters, size)
    print(
        json.dumps(
            {"model": meta.get("name"), "device": str(device), "threads": threads, "auto": auto, "results": rows}
        )
    )


if __name__ == "__main__":
    main()
