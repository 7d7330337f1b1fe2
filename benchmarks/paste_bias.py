"""How much a model tells its target from an exact copy of it by context alone.

    python benchmarks/paste_bias.py --davis ../davis2016 --sequences bmx-bumps,boat,... \\
        [--scenes 400] [--context 0] [--seed 123] --model default [--model models/v5.pt ...]

Look-alike training pairs and the look-alike proxy (``make_lookalike_davis.py``) paste a copy of
the target beside it. If a model can pick the real object out by what surrounds it (the template
crop holds a 0.5 margin of context), such pairs teach it context, and a flock of birds that share
their context stays as hard as before. This measures that cue. In each scene a frame holds its
target and, touching it and behind it, the target itself pasted once more (``add_twin`` of the
proxy, at 1.0 x the target's longer side, in a random direction). The search crop is centred
halfway between the two and the prior is empty, so neither the crop's centre nor the previous
mask says which is the target; the template is the target's crop from 1-29 frames earlier (the
same frame when the scene falls on a sequence's first). The sequences are held in memory (~2 GB
for the 24 training sequences). ``share`` = the model's mask mass on the target / its mass on target and copy: 0.5 is a
model that cannot tell them apart (it picks either, or both), 1.0 one that always finds the real
object. ``--context C`` pastes the copy with its surroundings (its box grown by C x its longer
side), which takes that cue away.

Round 23 (400 scenes from the 24 training sequences, seed 123): v6 0.889 with the object alone
and 0.598 with a 0.5 context; a GPU fine-tune on pasted exact look-alikes (round 23's G2) 0.950
and 0.603: it learned more of the context cue, not a cue that survives without it.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package from this working tree

from make_lookalike_davis import add_twin, read_sequence, twin_matrix  # noqa: E402

from vosctl.errors import InputError, VosctlError  # noqa: E402
from vosctl.eval.davis import DavisDataset  # noqa: E402
from vosctl.geometry import crop_image, crop_matrix, mask_box, search_side, template_side  # noqa: E402

TEMPLATE_SIZE = 128
MIN_AREA = 400  # objects smaller than this (pixels) make noisy shares
MIN_CROP_PIXELS = 50  # both target and copy must show this much in the search crop


@dataclass
class Scene:
    template: np.ndarray  # (T, T, 3) uint8 RGB
    template_mask: np.ndarray  # (T, T) float32
    search: np.ndarray  # (S, S, 3) uint8 RGB
    target: np.ndarray  # (S, S) bool: the real object in the crop
    copy: np.ndarray  # (S, S) bool: the visible part of the pasted copy


def make_scene(
    template_frame: np.ndarray,
    template_mask: np.ndarray,
    frame: np.ndarray,
    mask: np.ndarray,
    angle: float,
    context: float,
    search_size: int,
) -> Scene | None:
    """One scene (see the module's doc), or None when the object is too small or too large, or the
    copy falls mostly outside the frame or the crop."""
    box, template_box = mask_box(mask), mask_box(template_mask)
    if box is None or template_box is None:
        return None
    x, y, w, h = box
    height, width = mask.shape
    if mask.sum() < MIN_AREA or w > width / 2 or h > height / 2:
        return None
    matrix = twin_matrix(mask, mask, angle, 1.0)
    assert matrix is not None  # the mask is not empty
    pasted = add_twin(frame, mask, frame, mask, angle, 1.0, context)
    copy = (cv2.warpAffine(mask.astype(np.float32), matrix, (width, height)) > 0.5) & ~mask
    if copy.sum() < 0.5 * mask.sum():
        return None
    copy_x, copy_y = matrix[0, 2] + x + w / 2, matrix[1, 2] + y + h / 2  # scale 1: a shift
    crop = crop_matrix(
        (x + w / 2 + copy_x) / 2,
        (y + h / 2 + copy_y) / 2,
        search_side(w, h, 0.5, 2.0, width, height, True),
        search_size,
    )
    target_crop = crop_image(mask.astype(np.float32), crop, search_size) > 0.5
    copy_crop = crop_image(copy.astype(np.float32), crop, search_size) > 0.5
    if target_crop.sum() < MIN_CROP_PIXELS or copy_crop.sum() < MIN_CROP_PIXELS:
        return None
    tx, ty, tw, th = template_box
    template = crop_matrix(tx + tw / 2, ty + th / 2, template_side(tw, th), TEMPLATE_SIZE)
    return Scene(
        template=crop_image(template_frame, template, TEMPLATE_SIZE),
        template_mask=crop_image(template_mask.astype(np.float32), template, TEMPLATE_SIZE),
        search=crop_image(pasted, crop, search_size),
        target=target_crop,
        copy=copy_crop,
    )


def draw_scenes(
    dataset: DavisDataset, names: list[str], count: int, context: float, search_size: int, seed: int
) -> list[Scene]:
    """``count`` scenes from the sequences ``names`` (random frames, gaps and directions)."""
    rng = np.random.default_rng(seed)
    sequences = []
    for name in names:
        _, frames, masks = read_sequence(dataset, name)
        sequences.append(([np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames], masks))
    scenes: list[Scene] = []
    for _ in range(200 * count):  # bounded: sequences whose objects never qualify end the search
        if len(scenes) == count:
            break
        frames, masks = sequences[int(rng.integers(len(sequences)))]
        s = int(rng.integers(len(frames)))
        t = max(s - int(rng.integers(1, 30)), 0)
        scene = make_scene(frames[t], masks[t], frames[s], masks[s], rng.uniform(0, 2 * math.pi), context, search_size)
        if scene is not None:
            scenes.append(scene)
    if len(scenes) < count:
        raise InputError(f"only {len(scenes)} of {count} scenes found: objects too small, too large or at the edge")
    return scenes


def shares(model_name: str, scenes: list[Scene], batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per scene: the share of mask mass on the target, and the thresholded mask's IoU with it."""
    import torch

    from vosctl.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(model_name)
    share, iou = [], []
    with torch.inference_mode():
        for start in range(0, len(scenes), batch):
            chunk = scenes[start : start + batch]
            out = model(
                torch.from_numpy(np.stack([s.template for s in chunk])).permute(0, 3, 1, 2).float(),
                torch.from_numpy(np.stack([s.template_mask for s in chunk]))[:, None],
                torch.from_numpy(np.stack([s.search for s in chunk])).permute(0, 3, 1, 2).float(),
                torch.zeros(len(chunk), 1, *chunk[0].target.shape),
            )
            probability = torch.sigmoid(out.mask_logits[:, 0]).numpy()
            for p, scene in zip(probability, chunk, strict=True):
                on_target, on_copy = float((p * scene.target).sum()), float((p * scene.copy).sum())
                share.append(on_target / max(on_target + on_copy, 1e-6))
                predicted = p > 0.5
                iou.append((predicted & scene.target).sum() / max((predicted | scene.target).sum(), 1))
    return np.array(share), np.array(iou)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, required=True, help="DAVIS-2016 root")
    parser.add_argument("--sequences", required=True, help="comma-separated names")
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--context", type=float, default=0.0, help="the copy's surroundings: margin / its side")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--search-size", type=int, default=288, help="search crop (the tracker's default)")
    parser.add_argument("--model", action="append", required=True, help="model name or path (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.scenes < 1 or args.context < 0 or args.search_size % 16:
            raise InputError("--scenes must be >= 1, --context >= 0 and --search-size a multiple of 16")
        if not args.davis.is_dir():
            raise InputError(f"DAVIS root {args.davis} is not a folder")
        dataset = DavisDataset(args.davis, year="2016")
        names = list(dict.fromkeys(args.sequences.split(",")))
        scenes = draw_scenes(dataset, names, args.scenes, args.context, args.search_size, args.seed)
        print(f"{len(scenes)} scenes, context {args.context}")
        for name in args.model:
            share, iou = shares(name, scenes)
            print(
                f"{name}: share on target {share.mean():.3f} (>0.9: {np.mean(share > 0.9):.2f}, "
                f"<0.1: {np.mean(share < 0.1):.2f}); IoU with target {iou.mean():.3f}"
            )
    except VosctlError as error:  # bad input, or a model that cannot be loaded
        print(f"paste_bias: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
