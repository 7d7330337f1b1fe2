"""Network cost per frame: search crop -> score -> dynamic-kernel mask, for 1, 2 and 4 objects.

    python benchmarks/bench_model.py [--model default] [--threads 2] [--iters 100] [--device cpu]

The template branch runs once per object at the first frame and is excluded, as in tracking.
Reports milliseconds per forward and frames per second (one forward per frame) for fp32 and bf16.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vosctl.engine import bf16_supported as _bf16_supported
from vosctl.model.checkpoint import load_checkpoint


def measure(model, device: torch.device, objects: int, bf16: bool, iters: int) -> float:
    cfg = model.config
    search = (torch.rand(objects, 3, cfg.search_size, cfg.search_size, device=device) * 255).contiguous(
        memory_format=torch.channels_last
    )
    template = torch.rand(objects, 3, cfg.template_size, cfg.template_size, device=device) * 255
    template_mask = torch.ones(objects, 1, cfg.template_size, cfg.template_size, device=device)
    prior = torch.zeros(objects, 1, cfg.search_size, cfg.search_size, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        embedding = model.embed_template(template.contiguous(memory_format=torch.channels_last), template_mask)
        for _ in range(10):
            model.forward_search(search, embedding, prior)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            out = model.forward_search(search, embedding, prior)
            out.mask_logits.cpu()  # the tracker needs the mask on the host
        elapsed = time.perf_counter() - start
    return elapsed / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, meta = load_checkpoint(args.model, device)
    model = model.to(memory_format=torch.channels_last)
    rows = []
    precisions = [False] + ([True] if _bf16_supported(device) else [])
    for bf16 in precisions:
        for objects in (1, 2, 4):
            seconds = measure(model, device, objects, bf16, args.iters)
            rows.append(
                {
                    "precision": "bf16" if bf16 else "fp32",
                    "objects": objects,
                    "ms_per_frame": round(seconds * 1000, 2),
                    "fps": round(1 / seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"model": meta.get("name"), "device": str(device), "threads": args.threads, "results": rows}))


if __name__ == "__main__":
    main()
