"""Resumable, seeded training loop for SiamDMN (``vosctl train CONFIG``).

The run folder holds ``last.pt`` (full state: weights, optimiser, step; written every few
minutes and at each epoch end, atomically), ``log.jsonl`` (one JSON line per log event) and
``model.pt`` (the compact fp16 inference checkpoint, refreshed at each epoch end). Batches are
drawn from ``np.random.default_rng([seed, step])`` so a resumed run sees the same data it would
have seen without the interruption.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vosctl.errors import InputError
from vosctl.eval.davis import YEARS
from vosctl.geometry import mask_box
from vosctl.model.checkpoint import save_checkpoint
from vosctl.model.network import NetworkConfig, SearchOutput, SiamDMN, TemplateEmbedding
from vosctl.train.data import DavisFrames, PairConfig, PairSampler, StaticImages, default_sequences
from vosctl.train.losses import centre_heatmap, distillation_loss, focal_heatmap_loss, mask_loss

if TYPE_CHECKING:
    from vosctl.tracker import SegmenterConfig


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    davis_root: str | None = None  # DAVIS layout (after shared/data/davis2016-train/unpack.py)
    # "2016": one object per sequence (binary masks). "2017": palette ids, one target per object, the
    # other objects in view as negatives (``DavisFrames``); the split is ImageSets/<year>/train.txt.
    davis_year: str = "2016"
    # With davis_year "2017", False merges each frame's objects into one target (the control).
    davis_instances: bool = True
    heldout: list[str] = field(default_factory=list)  # never trained on; evaluated every epoch
    static_root: str | None = None  # DUTS layout
    static_limit: int | None = None
    imagenet_weights: str | None = None
    # Fine-tuning: start from this checkpoint (name or path); layers it lacks keep their init.
    init_checkpoint: str | None = None
    # Distillation: a frozen teacher (name or path, e.g. "v6") run on the same batch; the student also
    # matches its mask, score and presence (loss_weights["distill"], default 1), as a narrower
    # network learns more from a teacher's soft outputs than from the labels alone.
    teacher_checkpoint: str | None = None
    freeze_neck_bn: bool = False  # keep the neck's BN statistics (shared by template and search) fixed
    # Parameter-name prefixes that train (empty: all). Everything else is frozen, BN statistics
    # included: a new layer can be fitted on a CPU, where the backbone's backward would not fit.
    trainable: list[str] = field(default_factory=list)
    source_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # video, static, synthetic
    batch_size: int = 16
    steps: int = 8000
    epoch_steps: int = 400
    lr: float = 6e-4
    backbone_lr_scale: float = 0.15
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    seed: int = 0
    bf16: bool = True
    checkpoint_minutes: float = 4.0
    # Processes that build batches (0: one background thread, enough on a 2-core CPU). A GPU step
    # is ~100x faster than the CPU's, so there the batches come from a torch DataLoader whose
    # workers (forked, sharing the decoded frames) return them through shared memory.
    loader_workers: int = 0
    # Exponential moving average of the weights (0: off). With it, the held-out evaluation and the
    # exported model.pt use the averaged weights (model_raw.pt keeps the last step's own): tracking
    # outcomes can flip between neighbouring checkpoints, and an average over the last ~1/(1-decay)
    # steps is far less sensitive to where the run happens to stop.
    ema_decay: float = 0.0
    heldout_max_frames: int = 60
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"score": 1.0, "bce": 2.0, "dice": 1.0, "presence": 0.5}
    )
    network: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"training config {path} does not exist")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"training config {path} is not valid JSON ({error.msg}, line {error.lineno})") from error
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"training config {path} has unknown keys: {', '.join(unknown)}")
        config = cls(**raw)
        if config.davis_year not in YEARS:
            years = " or ".join(YEARS)
            raise InputError(f"training config {path}: davis_year must be {years}, not {config.davis_year!r}")
        base = path.parent
        # Relative data paths are relative to the config file, so configs travel with the repo.
        for key in ("davis_root", "static_root", "imagenet_weights", "init_checkpoint", "teacher_checkpoint"):
            value = getattr(config, key)
            checkpoint = key in ("init_checkpoint", "teacher_checkpoint")  # a bare name is a shipped model
            if value and not Path(value).is_absolute() and (not checkpoint or "/" in value):
                setattr(config, key, str((base / value).resolve()))
        if not Path(config.run_dir).is_absolute():
            config.run_dir = str((base / config.run_dir).resolve())
        return config


class WeightAverage:
    """EMA of a model's floating-point state (parameters and BN statistics); integer buffers copied."""

    def __init__(self, model: SiamDMN, decay: float) -> None:
        self.decay = decay
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._float_keys = [k for k, v in self.state.items() if v.is_floating_point()]
        self._other_keys = [k for k, v in self.state.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: SiamDMN) -> None:
        current = model.state_dict()
        # One fused launch per op over all tensors (a GPU step is short; ~300 tiny kernels are not).
        averaged = [self.state[k] for k in self._float_keys]
        torch._foreach_mul_(averaged, self.decay)
        torch._foreach_add_(averaged, [current[k].detach() for k in self._float_keys], alpha=1 - self.decay)
        for key in self._other_keys:
            self.state[key].copy_(current[key])

    def averaged(self) -> SiamDMN:
        """A copy of the model carrying the averaged weights (eval mode)."""
        import copy

        averaged = copy.deepcopy(self.model)
        averaged.load_state_dict(self.state)
        return averaged.eval()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)


def _select_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _fixed_bn_layers(model: SiamDMN, neck: bool = False) -> list[torch.nn.BatchNorm2d]:
    """BN layers whose running statistics stay fixed (kept in eval mode at every training step).

    The backbone's: its ImageNet statistics, as batches of 16 crops are too small to re-estimate
    them. With ``neck``, the neck's too: it sees template and search batches, whose statistics
    differ, so training would keep a mixture that matches neither. And every BN layer whose
    parameters are frozen (``TrainConfig.trainable``): a frozen layer keeps its statistics too.
    """
    fixed = {id(m) for m in list(model.backbone.modules()) + (list(model.neck.modules()) if neck else [])}
    return [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.BatchNorm2d)
        and (id(module) in fixed or not any(p.requires_grad for p in module.parameters()))
    ]


def steps_within_budget(
    warmup_steps: int, max_steps: int, seconds_per_step: float, seconds_left: float, safety: float = 1.1
) -> int:
    """How many steps in all a run can take when ``seconds_left`` remain at the end of its warm-up.

    The warm-up's pace is taken ``safety`` times slower: two runs sharing a machine's batch builders
    ran 2-11 % slower after it than during it (round 17), and a run that overruns loses its cosine's
    end. Never fewer than the warm-up already done, never more than the config's ``max_steps``.
    """
    fit = warmup_steps + int(max(0.0, seconds_left) / max(seconds_per_step * safety, 1e-9))
    return max(warmup_steps, min(max_steps, fit))


def _leading_slice(
    source: torch.Tensor, shape: torch.Size, groups: tuple[tuple[int, ...], tuple[int, ...]] | None
) -> torch.Tensor:
    """The parent's leading part of ``shape``; with ``groups`` (child's and parent's input channel
    groups) each group of dimension 1 takes its own leading channels, in order."""
    if groups is not None:
        child_groups, parent_groups = groups
        starts = [sum(parent_groups[:i]) for i in range(len(parent_groups))]
        source = torch.cat([source[:, start : start + size] for start, size in zip(starts, child_groups)], dim=1)
    return source[tuple(slice(0, size) for size in shape)]


def inherit_inference_crop(network: dict[str, Any], parent: NetworkConfig) -> dict[str, Any]:
    """The run's ``network`` fields, with the parent's ``inference_search_size`` unless they name one.

    The crop a model is tracked at is an inference setting stored in its checkpoint (v6: 288 px,
    trained at 256). A fine-tune that did not carry it would export a model that tracks at its
    training crop instead, silently less accurate (round 23's fine-tunes of v6 did).
    """
    if "inference_search_size" in network or parent.inference_search_size is None:
        return network
    return {**network, "inference_search_size": parent.inference_search_size}


def load_parent_weights(
    model: SiamDMN, parent: dict[str, torch.Tensor], parent_config: NetworkConfig | None = None
) -> tuple[list[str], list[str]]:
    """Start ``model`` from a parent's weights, where its architecture is the parent's or narrower.

    A tensor of the same shape is copied; one that is narrower in some dimension (a layer with fewer
    channels, e.g. ``fpn_channels`` 32 under a 64-channel parent) takes the parent's leading slice.
    Leading slices agree from layer to layer (output channels 0..k-1 of one feed inputs 0..k-1 of
    the next), so the narrow model starts from a consistent part of the parent, not from random
    weights; an input that concatenates groups (``NetworkConfig.concatenated_inputs``, with
    ``parent_config``) takes each group's leading channels. A layer wider than the parent's is an
    error. Returns (keys the parent lacks, left as initialised: new layers; keys narrowed).
    """
    state = model.state_dict()
    child_groups = model.config.concatenated_inputs
    parent_groups = (parent_config or model.config).concatenated_inputs
    new_keys, narrowed = [], []
    for key, target in state.items():
        source = parent.get(key)
        if source is None:
            new_keys.append(key)
            continue
        if source.dim() != target.dim() or any(t > s for t, s in zip(target.shape, source.shape)):
            raise ValueError(
                f"cannot start {key} {tuple(target.shape)} from the parent's {tuple(source.shape)}: only the same "
                "shape or a narrower one can be taken from a parent"
            )
        if source.shape != target.shape:
            groups = (child_groups[key], parent_groups[key]) if key in child_groups else None
            source = _leading_slice(source, target.shape, groups)
            narrowed.append(key)
        with torch.no_grad():
            target.copy_(source.to(target.dtype))
    return new_keys, narrowed


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


Batch = dict[str, "np.ndarray | torch.Tensor"]  # numpy from the thread, tensors from DataLoader workers


def _to_tensors(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    def move(x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x).to(device, non_blocking=True)

    def image(x: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = move(x).permute(0, 3, 1, 2).float()
        return t.contiguous(memory_format=torch.channels_last)

    return {
        "template": image(batch["template"]),
        "template_mask": move(batch["template_mask"]).unsqueeze(1),
        "search": image(batch["search"]),
        "search_mask": move(batch["search_mask"]).unsqueeze(1),
        "prior": move(batch["prior"]).unsqueeze(1),
        "present": move(batch["present"]),
        "template2": image(batch["template2"]),
        "template2_mask": move(batch["template2_mask"]).unsqueeze(1),
        "mix": move(batch["mix"]),
    }


def _centres(search_mask: np.ndarray | torch.Tensor) -> np.ndarray:
    search_mask = np.asarray(search_mask)
    centres = np.zeros((search_mask.shape[0], 2), np.float32)
    for i, mask in enumerate(search_mask):
        box = mask_box(mask > 0.5)
        if box is not None:
            centres[i] = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    return centres


def _forward_pair(model: SiamDMN, tensors: dict[str, torch.Tensor], location: torch.Tensor) -> SearchOutput:
    """The network on a batch of pairs: template(s) embedded, then the search with kernels at ``location``."""
    template = model.embed_template(tensors["template"], tensors["template_mask"])
    if bool((tensors["mix"] < 1).any()):
        # The tracker's appearance memory: a weighted mean of the first and a recent template. Every
        # row's second template is embedded (rows with mix 1 keep the first exactly): a fixed batch
        # shape, where a subset's size would change each step and make a GPU plan kernels anew.
        recent = model.embed_template(tensors["template2"], tensors["template2_mask"])
        a = tensors["mix"].to(template.kernel.dtype)
        kernel = a[:, None, None, None] * template.kernel + (1 - a[:, None, None, None]) * recent.kernel
        prototype = a[:, None] * template.prototype + (1 - a[:, None]) * recent.prototype
        # Colour evidence: the first template's only, as in the tracker's memory.
        template = TemplateEmbedding(kernel, prototype, template.colour)
    return model.forward_search(tensors["search"], template, tensors["prior"], location=location)


def compute_losses(
    model: SiamDMN,
    batch: Batch,
    device: torch.device,
    weights: dict[str, float],
    rng: np.random.Generator,
    teacher: SiamDMN | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch's loss and its logged parts; with a ``teacher``, also :func:`distillation_loss`
    against its outputs for the same templates, searches, priors and kernel cells."""
    cfg = model.config
    tensors = _to_tensors(batch, device)
    centres = torch.from_numpy(_centres(batch["search_mask"])).to(device)
    present = tensors["present"]
    grid = cfg.score_size
    cells = (centres / cfg.feature_stride).floor().long().clamp(0, grid - 1)
    # Kernels are taken near (not always at) the centre: the tracker's peak is never exact.
    jitter = torch.from_numpy(rng.integers(-1, 2, size=(len(cells), 2)) * (rng.random((len(cells), 1)) < 0.3)).to(
        device
    )
    location = (cells[:, [1, 0]] + jitter).clamp(0, grid - 1)  # (row, col)

    # Absent targets: the kernels of the cell the network itself would pick (-1: its argmax, the
    # most object-like distractor) must still return an empty mask.
    location = torch.where(present[:, None], location, torch.full_like(location, -1))
    out = _forward_pair(model, tensors, location)
    # The target sits on its kernel cell's centre: that is the cell whose kernels make the mask,
    # and it gives every present sample one cell at 1.0 (a positive for the focal loss).
    heat = centre_heatmap((cells.float() + 0.5) * cfg.feature_stride, present, grid, cfg.feature_stride)
    score_loss = focal_heatmap_loss(out.score, heat)
    bce, dice, edge_bce = mask_loss(out.mask_logits, tensors["search_mask"], present)
    total = weights["score"] * score_loss + weights["bce"] * bce + weights["dice"] * dice
    # The boundary term is logged in every run (a control run shows how it moves without it) but
    # only joins the loss, and so carries gradients, when it is weighted.
    boundary_weight = weights.get("boundary", 0.0)
    if boundary_weight > 0:
        total = total + boundary_weight * edge_bce
    presence_loss = torch.zeros((), device=device)
    if "presence" in out.extras:
        presence_loss = F.binary_cross_entropy_with_logits(out.extras["presence"].float(), present.float())
        total = total + weights.get("presence", 0.5) * presence_loss
    distill = torch.zeros((), device=device)
    if teacher is not None:
        with torch.no_grad():  # the teacher's kernels from the cell the student's came from (absent rows too)
            taught = _forward_pair(teacher, tensors, out.location)
        distill = distillation_loss(
            out.mask_logits,
            taught.mask_logits,
            out.score,
            taught.score,
            out.extras.get("presence"),
            taught.extras.get("presence"),
        )
        total = total + weights.get("distill", 1.0) * distill
    with torch.no_grad():
        pred = out.mask_logits.float() > 0
        gt = tensors["search_mask"] > 0.5
        inter = (pred & gt).flatten(1).sum(1).float()
        union = (pred | gt).flatten(1).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return total, {
        "loss": float(total.detach()),
        "score": float(score_loss.detach()),
        "bce": float(bce.detach()),
        "dice": float(dice.detach()),
        "boundary": float(edge_bce.detach()),
        "presence": float(presence_loss.detach()),
        "distill": float(distill.detach()),
        "iou": float(iou[present].mean()) if bool(present.any()) else float("nan"),
    }


class _StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is that step's whole batch: which worker builds it never changes its content."""

    def __init__(self, make_batch: Callable[[int], tuple[Batch, np.random.Generator]], steps: range) -> None:
        self.make_batch, self.steps = make_batch, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> tuple[Batch, np.random.Generator]:
        return self.make_batch(self.steps[index])


def _quiet_worker(_: int) -> None:
    # The workers are the parallelism; nested thread pools only contend. OpenCV's pool is set to one
    # thread in the parent before the fork (``_batch_stream``): cv2.setNumThreads here, in a child
    # forked while the parent's pool had threads, waits forever for threads the fork did not copy.
    torch.set_num_threads(1)


def _batch_stream(
    make_batch: Callable[[int], tuple[Batch, np.random.Generator]],
    start: int,
    end: int,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[tuple[Batch, np.random.Generator]]:
    """The batches of steps ``start..end-1`` in order, built ahead of the training step.

    Each batch depends only on its step (its own seeded generator), so thread and worker
    processes give identical data and a resumed run continues exactly.
    """
    if workers <= 0:
        pool = ThreadPoolExecutor(max_workers=1)  # cv2 releases the GIL: the next batch is built during this step
        try:
            pending = pool.submit(make_batch, start) if start < end else None
            for step in range(start, end):
                current = pending
                # The next step's batch only: none is built past the last step.
                pending = pool.submit(make_batch, step + 1) if step + 1 < end else None
                yield current.result()  # type: ignore[union-attr]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # in the parent, before the fork: the workers inherit a pool without threads
    loader = torch.utils.data.DataLoader(
        _StepBatches(make_batch, range(start, end)),
        batch_size=None,  # items are whole batches already
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_quiet_worker,
        prefetch_factor=4,
        pin_memory=pin_memory,  # only worth it when the step runs on a GPU
        multiprocessing_context="fork",  # workers share the decoded frames instead of copying them
    )
    try:
        yield from loader
    finally:
        cv2.setNumThreads(cv2_threads)


def heldout_j(
    model: SiamDMN,
    davis: DavisFrames,
    max_frames: int | None,
    device: torch.device | str,
    config: SegmenterConfig | None = None,
) -> dict[str, float]:
    """Track each sequence from its first mask with the real tracker; mean J per sequence.

    Several objects (DAVIS-2017 label maps) are tracked together from the first frame's ids and
    each is scored on its own id, as the DAVIS-2017 toolkit does; the sequence's figure is their mean.
    ``max_frames``: the first frames only (None: whole sequences); ``config``: the tracker's.
    """
    from vosctl.tracker import Segmenter

    segmenter = Segmenter(model=model, device=str(device), config=config, model_name="training")
    results: dict[str, float] = {}
    for name, frames, masks in zip(davis.names, davis.frames, davis.masks):
        frames, masks = frames[:max_frames], masks[:max_frames]
        ids = [int(i) for i in np.unique(masks[0]) if i > 0]
        scores: list[list[float]] = [[] for _ in ids]
        for index, result in enumerate(segmenter.track(frames, labels=masks[0])):
            if 0 < index < len(frames) - 1:  # DAVIS excludes the first and the last frame
                for k, object_id in enumerate(ids):
                    pred, gt = result.labels == object_id, masks[index] == object_id
                    union = np.logical_or(pred, gt).sum()
                    scores[k].append(1.0 if union == 0 else np.logical_and(pred, gt).sum() / union)
        per_object = [float(np.mean(s)) for s in scores if s]
        results[name] = float(np.mean(per_object)) if per_object else float("nan")
    return results


def pair_config_for(network: NetworkConfig, pairs: dict[str, Any]) -> PairConfig:
    """The training pairs' geometry for ``network``: its crop sizes, and the search window's side
    relative to the template window's as the tracker sets it (``search_size / template_size``), so
    training and tracking crop the same geometry whatever the search crop."""
    return PairConfig(
        template_size=network.template_size,
        search_size=network.search_size,
        search_factor=network.window_factor,
        **pairs,
    )


LOG_NAME = "log.jsonl"  # in a run folder: one JSON object per line, written by train()'s log()


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """A training run's log events, in order (what ``train`` wrote to ``run_dir/log.jsonl``)."""
    return [json.loads(line) for line in (Path(run_dir) / LOG_NAME).read_text().splitlines()]


def train(
    cfg: TrainConfig,
    device: str = "auto",
    resume: bool = True,
    stop_at: int | None = None,
    deadline: float | None = None,
) -> Path:
    """Train (or resume) until ``cfg.steps``, or stop early at step ``stop_at`` (same schedule).

    ``deadline`` (a ``time.monotonic()`` instant by which the last step must be done; the caller
    keeps the last export's few seconds free): at the end of the warm-up, whose learning rate does
    not depend on the number of steps, the run times the warm-up's second half and cuts
    ``cfg.steps`` to what fits before the deadline (``steps_within_budget``; ``config.json`` records
    it). The result is bit for bit the run a config with that many steps makes, in one process: no
    second set-up, which a stop-and-resume calibration pays. A run still going at the deadline stops
    there and exports (logged as a "deadline" event).
    """
    torch_device = _select_device(device)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def write_config() -> None:  # at the start, and again when a deadline sets the steps
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    write_config()
    log_path = run_dir / LOG_NAME

    def log(event: dict[str, Any]) -> None:
        event = {"time": round(time.time(), 1), **event}
        with log_path.open("a") as handle:
            handle.write(json.dumps(event) + "\n")
        print(json.dumps(event), flush=True)

    parent = None
    if cfg.init_checkpoint:
        from vosctl.model.checkpoint import load_checkpoint

        parent, _ = load_checkpoint(cfg.init_checkpoint)
    network = cfg.network if parent is None else inherit_inference_crop(cfg.network, parent.config)
    model = SiamDMN(NetworkConfig(**network)).to(torch_device)
    pair_cfg = pair_config_for(model.config, cfg.pairs)
    step = 0
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone.parameters(), "lr_scale": cfg.backbone_lr_scale},
            {"params": [p for n, p in model.named_parameters() if not n.startswith("backbone.")], "lr_scale": 1.0},
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    last = run_dir / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=torch_device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        log({"event": "resumed", "step": step})
    elif parent is not None:
        new_keys, narrowed = load_parent_weights(model, parent.state_dict(), parent.config)
        log({"event": "fine_tune_init", "from": cfg.init_checkpoint, "new_keys": new_keys, "narrowed": narrowed})
    elif cfg.imagenet_weights:
        missing = model.backbone.load_imagenet(cfg.imagenet_weights)
        log({"event": "imagenet_init", "missing_keys": len(missing)})
    if cfg.trainable:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith(tuple(cfg.trainable)))
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"no parameter name starts with any of {cfg.trainable}")
    model = model.to(memory_format=torch.channels_last)
    teacher = None
    if cfg.teacher_checkpoint:
        from vosctl.model.checkpoint import load_checkpoint

        teacher, _ = load_checkpoint(cfg.teacher_checkpoint)
        shape = ("template_size", "search_size", "mask_stride")  # what the outputs' grids depend on
        theirs, ours = teacher.config, model.config
        differ = [
            f"{k} {getattr(theirs, k)} vs {getattr(ours, k)}" for k in shape if getattr(theirs, k) != getattr(ours, k)
        ]
        if differ:
            raise InputError(f"teacher {cfg.teacher_checkpoint} does not fit the student: {', '.join(differ)}")
        teacher = teacher.float().to(torch_device, memory_format=torch.channels_last).eval().requires_grad_(False)
        log({"event": "teacher", "from": cfg.teacher_checkpoint})
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and resume and last.exists() and "ema" in state:
        ema.load_state_dict(state["ema"])

    # Data (held-out sequences are never part of the training sources).
    davis = heldout = None
    if cfg.davis_root:
        sequences = default_sequences(cfg.davis_root, cfg.davis_year)
        train_seqs = [s for s in sequences if s not in set(cfg.heldout)]
        davis = DavisFrames(cfg.davis_root, train_seqs, cfg.davis_year, cfg.davis_instances)
        if cfg.heldout:
            heldout_seqs = [s for s in cfg.heldout if s in sequences]
            heldout = DavisFrames(cfg.davis_root, heldout_seqs, cfg.davis_year, cfg.davis_instances)
        objects = sum(len(ids) for ids in davis.objects)  # several per sequence with davis_year 2017
        log({"event": "data", "train_sequences": train_seqs, "train_objects": objects, "heldout": cfg.heldout})
    static = StaticImages(cfg.static_root, cfg.static_limit) if cfg.static_root else None
    sampler = PairSampler(pair_cfg, davis, static, cfg.source_weights)

    def make_batch(batch_step: int) -> tuple[dict[str, np.ndarray], np.random.Generator]:
        rng = np.random.default_rng([cfg.seed, batch_step])
        return sampler.batch(rng, cfg.batch_size), rng

    def save_full(reason: str) -> None:
        tmp = last.with_name(f".last.pt.tmp-{os.getpid()}")
        full = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        if ema is not None:
            full["ema"] = ema.state_dict()
        torch.save(full, tmp)
        os.replace(tmp, last)
        log({"event": "checkpoint", "step": step, "reason": reason})

    def export(extra: dict[str, Any], averaged: SiamDMN | None) -> None:
        metadata = {
            "name": run_dir.name,
            "steps": step,
            "batch_size": cfg.batch_size,
            "heldout_sequences": cfg.heldout,
            "train_config": asdict(cfg),
            "device": str(torch_device),
            "torch": str(torch.__version__),
            **extra,
        }
        if averaged is None:
            save_checkpoint(model, run_dir / "model.pt", metadata)
            return
        save_checkpoint(model, run_dir / "model_raw.pt", {**metadata, "weights": "last step"})
        save_checkpoint(averaged, run_dir / "model.pt", {**metadata, "weights": f"EMA {cfg.ema_decay}"})

    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    # Built up to cfg.steps even when a deadline may cut the run: a batch depends only on its step.
    batches = _batch_stream(make_batch, step, end, cfg.loader_workers, pin_memory=torch_device.type == "cuda")
    # A run resumed past the warm-up's first half (or with a warm-up under 2 steps) keeps its steps.
    timed_from = cfg.warmup_steps // 2  # the warm-up's second half is timed
    calibrate_by = deadline if step < timed_from else None
    timed_start = 0.0
    last_save = time.monotonic()
    window: list[dict[str, float]] = []
    t_epoch = time.monotonic()
    wall_start = time.monotonic()
    fixed_bn = _fixed_bn_layers(model, neck=cfg.freeze_neck_bn)
    while step < end:
        model.train()
        for layer in fixed_bn:
            layer.eval()
        waited = time.monotonic()
        batch, rng = next(batches)
        waited = time.monotonic() - waited  # > 0 when the batch builders, not the step, set the pace
        factor = _lr_factor(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor * group["lr_scale"]
        with torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, stats = compute_losses(model, batch, torch_device, cfg.loss_weights, rng, teacher)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        step += 1
        if calibrate_by is not None and step == timed_from:
            timed_start = time.monotonic()
        if calibrate_by is not None and step == cfg.warmup_steps:
            # The second half of the warm-up: past the first steps' one-off costs (kernel
            # selection, batch builders starting), as representative as the run gets this early.
            seconds_per_step = (time.monotonic() - timed_start) / max(1, step - timed_from)
            steps = steps_within_budget(cfg.warmup_steps, cfg.steps, seconds_per_step, calibrate_by - time.monotonic())
            calibrate_by = None
            cfg = replace(cfg, steps=steps)
            end = steps if stop_at is None else min(steps, stop_at)
            write_config()
            log({"event": "calibrated", "step": step, "ms_per_step": round(1000 * seconds_per_step, 1), "steps": steps})
        if deadline is not None and cfg.warmup_steps <= step < end and time.monotonic() > deadline:
            # Slower than calibrated after all: stop here and export, rather than be killed
            # by the caller's time limit with only the last epoch's export to show.
            end = step
            log({"event": "deadline", "step": step})
        window.append({**stats, "data_wait_ms": 1000 * waited})
        if step % 50 == 0:
            mean = {k: round(float(np.nanmean([w[k] for w in window])), 4) for k in window[0]}
            log({"event": "train", "step": step, "lr": round(cfg.lr * factor, 7), **mean})
            window.clear()
        if time.monotonic() - last_save > cfg.checkpoint_minutes * 60:
            save_full("timer")
            last_save = time.monotonic()
        if step % cfg.epoch_steps == 0 or step == end:
            save_full("epoch")
            last_save = time.monotonic()
            extra: dict[str, Any] = {"epoch_seconds": round(time.monotonic() - t_epoch, 1)}
            averaged = None if ema is None else ema.averaged()  # evaluated and exported
            if heldout is not None and heldout.frames:
                model.eval()
                try:
                    evaluated = model if averaged is None else averaged
                    per_seq = heldout_j(evaluated, heldout, cfg.heldout_max_frames, torch_device)
                    extra["heldout_j"] = per_seq
                    extra["heldout_j_mean"] = round(float(np.mean(list(per_seq.values()))), 4)
                except Exception as error:  # evaluation must never kill a long training run
                    extra["heldout_error"] = f"{type(error).__name__}: {error}"
            log({"event": "epoch", "step": step, **extra})
            export({k: v for k, v in extra.items() if k.startswith("heldout")}, averaged)
            t_epoch = time.monotonic()
    batches.close()
    log({"event": "done", "step": step, "session_seconds": round(time.monotonic() - wall_start, 1)})
    return run_dir / "model.pt"


def train_from_config(
    config_path: str | os.PathLike[str], resume: bool = True, device: str = "auto", stop_at: int | None = None
) -> Path:
    return train(TrainConfig.from_json(config_path), device=device, resume=resume, stop_at=stop_at)
