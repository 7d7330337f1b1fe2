"""The cropped-search tracking loop: explicit per-object state, one batched forward per frame.

Usage from Python::

    from vosctl import Segmenter
    seg = Segmenter.from_pretrained("default")
    for result in seg.track(frames, labels=first_mask):   # a generator: one result per frame
        result.labels          # uint8 HxW, the prompt's object ids
        result.objects[1]      # ObjectResult(box, area, score, lost)

or drive it yourself: ``state, first = seg.init_state(first_rgb, labels)`` then ``seg.step(state, rgb)``.

Per frame, for every object: crop a search window around its last position (wider while it is
lost), crop its previous mask the same way as a prior, run the network for all objects in one
batch, choose the centre cell (score + cosine window), decode the mask from that cell's dynamic
kernels, paste it back into the frame, decide presence, resolve overlaps, and update position and
size from the mask (size smoothed).

The decisions live beside this loop, each with one owner, so they can change independently:

==================  ======================================================
``vosctl.engine``   device, precision, the batched forward (numpy in/out)
``vosctl.geometry`` search-window size, crop and paste
``vosctl.motion``   where the next search window is centred (off: the last position)
``vosctl.presence`` visible / lost / re-acquired, lost-search widening
``vosctl.memory``   appearance memory (trusted prompt entry + recent bank)
``vosctl.merge``    per-object mask logits -> one label map
==================  ======================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from vosctl.colour import ColourConfig, colour_table, refine_logits
from vosctl.engine import Engine, SearchResult
from vosctl.errors import InputError, require
from vosctl.geometry import (
    PAD_COLOUR,
    REGION_CELL,
    LocalMask,
    canvas_window,
    crop_image,
    crop_matrix,
    crop_torch,
    grid_matrix,
    mask_box,
    paste_crop,
    region_run_doubtful,
    search_side,
    shift_matrix,
    smallest_mask_region,
    template_side,
)
from vosctl.io.checks import check_frame, check_labels
from vosctl.memory import AppearanceMemory, MemoryConfig
from vosctl.merge import Window, merge_windows
from vosctl.model.network import OUTSIDE_REGION_LOGIT, SiamDMN, TemplateEmbedding
from vosctl.motion import MotionConfig, search_centre, update_velocity
from vosctl.presence import PresenceConfig, PresenceSignals, lost_search_growth, sweep_centre, update_presence
from vosctl.results import FrameResult, ObjectResult

# A search run with a mask region is kept only if every object's presence is at least this
# (well above the lost / found / memory thresholds, 0.3 / 0.6 / 0.7); else it runs again on the
# whole canvas (Segmenter._region_result_doubtful).
REGION_MIN_PRESENCE = 0.9

# The colour pass's stand-in mask for an object it does not draw (merge_windows never reads it).
_NOTHING_DRAWN = np.zeros((0, 0), np.bool_)

BoxXYWH = tuple[float, float, float, float]
BoxesPrompt = list[BoxXYWH] | dict[int, BoxXYWH]
"""Boxes (x, y, w, h) in pixels: a list (object ids 1..N) or a mapping object id -> box."""


@dataclass(frozen=True)
class SegmenterConfig:
    context: float = 0.5  # template window = box + context x half-perimeter (SiamMask)
    window_influence: float = 0.35  # strength of the cosine-window motion penalty on the score
    mask_threshold: float = 0.5
    size_smoothing: float = 0.6  # weight of the new mask-derived size (0: never adapt, 1: no smoothing)
    min_size: float = 8.0  # object box never shrinks below this (pixels)
    max_size_change: float = 1.2  # per-frame limit on the size update (factor)
    overlap_prior_weight: float = 1.0  # contested pixels: weight (1 + this) for the previous owner
    cap_search_to_frame: bool = True  # search window never wider than the frame (see geometry.search_side)
    full_frame: bool = False  # ablation: search the whole frame (at the crop's scale) instead of a crop
    # --full-frame refuses (one-line error) a network input larger than this many pixels: a small
    # object on a 4K frame would otherwise ask for a 15k x 8k canvas and tens of GB.
    full_frame_max_pixels: int = 2048 * 2048
    precision: str = "auto"  # "auto" (the fastest native one, see engine.choose_precision), "fp32", "bf16", "fp16"
    # "torch", or "onnx": the per-frame search in ONNX Runtime on CPU (vosctl.onnx_engine; exported
    # and cached at first use, torch as the fallback); "auto": onnx on a CPU where torch runs fp32
    # without oneDNN-fused traces (onnx_engine.make_engine), else torch.
    engine: str = "torch"
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    colour: ColourConfig = field(default_factory=ColourConfig)
    # Search crop side (pixels, a multiple of 16) the search window is resampled to; None: the
    # model's own (NetworkConfig.tracking_search_size). Larger = finer masks and slower (cost ~ side^2);
    # the window itself does not change.
    search_size: int | None = None
    # Search window side / template window side; None: the model's trained factor
    # (NetworkConfig.window_factor). Smaller = the object fills more of the crop (finer masks at
    # the same cost) but less room to move between frames.
    window_factor: float | None = None
    # The mask path (the network's stride-4 and stride-2 layers, ~1/4 of its time at 288 px) runs
    # over the canvas's central ``mask_region`` x each side only, when every tracked object's
    # previous mask, grown by ``mask_region_margin`` x its longer side, lies inside that part; the
    # rest of the mask is background. 1.0: always the whole canvas. Lost objects, box prompts and
    # --full-frame always use the whole canvas.
    mask_region: float = 2 / 3
    mask_region_margin: float = 0.25
    # A smaller central part tried first, with the same margin and safety: a compact object fills
    # ~1/4 of its crop's side (0.375 with the margin), so 1/2 holds it, and its mask path covers
    # 0.56x the 2/3 region's area (model card, round 18). >= ``mask_region``: off.
    mask_region_small: float = 0.5

    def __post_init__(self) -> None:
        # Ranges outside which the tracker would fail later or silently produce nonsense; the
        # search size, precision and engine are checked where they are resolved.
        require(self.context >= 0.0, f"context must be >= 0, got {self.context}")
        require(0.0 <= self.window_influence <= 1.0, f"window_influence must be in [0, 1], got {self.window_influence}")
        require(0.0 < self.mask_threshold < 1.0, f"mask_threshold must be between 0 and 1, got {self.mask_threshold}")
        require(0.0 <= self.size_smoothing <= 1.0, f"size_smoothing must be in [0, 1], got {self.size_smoothing}")
        require(self.min_size > 0.0, f"min_size must be > 0, got {self.min_size}")
        require(self.max_size_change >= 1.0, f"max_size_change must be >= 1, got {self.max_size_change}")
        require(self.overlap_prior_weight >= 0.0, f"overlap_prior_weight must be >= 0, got {self.overlap_prior_weight}")
        require(
            self.window_factor is None or self.window_factor >= 1.0,
            f"window_factor must be >= 1 (the search window holds the template window), got {self.window_factor}",
        )
        require(self.full_frame_max_pixels > 0, f"full_frame_max_pixels must be > 0, got {self.full_frame_max_pixels}")
        require(0.0 < self.mask_region <= 1.0, f"mask_region must be in (0, 1], got {self.mask_region}")
        require(self.mask_region_margin >= 0.0, f"mask_region_margin must be >= 0, got {self.mask_region_margin}")
        require(
            0.0 < self.mask_region_small <= 1.0, f"mask_region_small must be in (0, 1], got {self.mask_region_small}"
        )

    @property
    def mask_logit_threshold(self) -> float:
        """``mask_threshold`` as a logit: the tracker thresholds the mask logits after pasting them."""
        return math.log(self.mask_threshold / (1.0 - self.mask_threshold))


@dataclass
class ObjectState:
    object_id: int
    cx: float
    cy: float
    w: float
    h: float
    score: float = 1.0
    lost: bool = False
    area: float = 0.0  # smoothed mask area (pixels), to judge re-acquisitions
    lost_frames: int = 0  # consecutive frames lost
    low_frames: int = 0  # consecutive frames of weak presence while still tracked
    velocity: tuple[float, float] = (0.0, 0.0)  # smoothed per-frame box-centre displacement (vosctl.motion)


@dataclass
class TrackState:
    """Everything the tracker knows between frames; no hidden globals."""

    width: int
    height: int
    objects: list[ObjectState]
    memory: AppearanceMemory
    # Each object's last mask over its box only (frame-size independent): the next frame's prior
    # and the overlap tie-break. Build one with LocalMask.from_frame(labels == object_id).
    prev_masks: list[LocalMask]
    frame_index: int = 0
    # Frames stepped since the state began: schedules (memory updates) count these, not frame
    # numbers, so a backward pass behaves exactly like a forward pass over the reversed clip.
    steps: int = 0
    last_result: FrameResult | None = None  # the latest frame's result (a prompt on that frame corrects it)
    # Reused buffers (the per-frame loop must not allocate per object per frame).
    search_buffer: np.ndarray | None = None
    prior_buffer: np.ndarray | None = None
    # Window-sized scratch arrays, grown on demand and viewed at each frame's window size.
    scratch: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    # Per object: its colour log-ratio table (vosctl.colour), from its latest prompt; empty when off.
    colour_tables: list[np.ndarray] = field(default_factory=list)

    @property
    def templates(self) -> TemplateEmbedding:
        """The combined appearance embedding the network uses this frame."""
        return self.memory.combined()


class Segmenter:
    """Semi-supervised VOS with SiamDMN: first-frame mask or boxes in, per-frame masks out."""

    def __init__(
        self,
        model: SiamDMN,
        device: str = "auto",
        config: SegmenterConfig | None = None,
        model_name: str = "custom",
        threads: int | None = None,
    ) -> None:
        from vosctl.threads import applied_threads, apply_thread_policy, available_cores

        # An explicit count is applied here; the default rule is applied by from_pretrained (the
        # entry point of the CLI and of most users), not here, so code that builds a Segmenter
        # around its own model (training's held-out evaluation) keeps the threads it runs with.
        self.threads = apply_thread_policy(threads) if threads is not None else applied_threads()
        self.config = config or SegmenterConfig()
        if self.config.engine == "torch":
            self.engine = Engine(model, device=device, precision=self.config.precision)
        else:
            from vosctl.onnx_engine import make_engine

            self.engine = make_engine(model, self.config.engine, device, self.config.precision, self.threads)
        # CUDA: crops are made on the device from one upload of the frame (through a pinned buffer).
        self._on_device = self.engine.torch_device.type == "cuda"
        # Jobs decode ahead of and write behind the tracker in threads (vosctl.prefetch): on CUDA the
        # decode overlaps the device; on a CPU with a second core, I/O runs beside the network.
        self.prefetch_decode = self.write_behind = self._on_device or available_cores() > 1
        self._pinned = None
        self.torch_device = self.engine.torch_device
        self.device = self.engine.device
        self.use_bf16 = self.engine.precision == "bf16"
        self.model_name = model_name
        self.metadata: dict = {}
        net = model.config
        self.search_size = self.config.search_size or net.tracking_search_size
        if self.search_size % net.feature_stride or self.search_size < 4 * net.feature_stride:
            raise ValueError(
                f"search_size must be a multiple of {net.feature_stride} and at least 64, got {self.search_size}"
            )
        self.template_size = net.template_size
        self.score_size = self.search_size // net.feature_stride
        self.has_presence_head = bool(getattr(net, "presence_head", False))
        # The trained window unless overridden; search_size only resamples it.
        self.search_factor = self.config.window_factor or net.window_factor
        self._bias_cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "default",
        device: str = "auto",
        config: SegmenterConfig | None = None,
        threads: int | None = None,
    ) -> Segmenter:
        """Load a shipped model by name, or a checkpoint path.

        ``threads``: CPU threads for this process (torch, OpenCV, FFmpeg); None applies the
        default rule of :mod:`vosctl.threads` (``OMP_NUM_THREADS``, else the free cores).
        """
        from vosctl.model.checkpoint import load_checkpoint
        from vosctl.threads import apply_thread_policy

        apply_thread_policy(threads)  # before loading: unpickling and BN fusion already use threads
        model, metadata = load_checkpoint(name_or_path)
        segmenter = cls(
            model, device=device, config=config, model_name=str(metadata.get("name", name_or_path)), threads=threads
        )
        segmenter.metadata = metadata
        return segmenter

    def expect_frames(self, count: int | None) -> None:
        """Tell the engine how many frames the next run will have (None: unknown), e.g. a video's
        frame count: a CPU engine then skips making traces that a short clip would not repay.

        The template embeddings to expect follow from the memory's schedule (one batched call per
        update); the prompt's own embedding and re-prompts are too few to count.
        """
        mem = self.config.memory
        embeds = None if count is None else (count // max(1, mem.update_every) if mem.bank_size > 0 else 0)
        self.engine.expect_calls(count, embeds)

    # ------------------------------------------------------------------ helpers
    def _window_side(self, state: TrackState, obj: ObjectState) -> float:
        """Side (frame pixels) of the normal search window around ``obj``."""
        cfg = self.config
        return search_side(
            obj.w, obj.h, cfg.context, self.search_factor, state.width, state.height, cfg.cap_search_to_frame
        )

    def _embed(self, rgb: np.ndarray, labels: np.ndarray, objects: list[ObjectState]) -> TemplateEmbedding:
        size = self.template_size
        crops = np.empty((len(objects), size, size, 3), np.uint8)
        masks = np.empty((len(objects), size, size), np.float32)
        for i, obj in enumerate(objects):
            matrix = crop_matrix(obj.cx, obj.cy, template_side(obj.w, obj.h, self.config.context), size)
            crops[i] = crop_image(rgb, matrix, size)
            # The mask over the template window only (a frame-sized float copy is 33 MB at 4K).
            x0, y0, x1, y1 = canvas_window(matrix, size, size, labels.shape[1], labels.shape[0])
            window = (labels[y0:y1, x0:x1] == obj.object_id).astype(np.float32)
            if window.size:
                crop_image(window, shift_matrix(matrix, x0, y0), size, out=masks[i])
            else:
                masks[i].fill(0.0)
        return self.engine.embed(crops, masks)

    # ------------------------------------------------------------------ state
    def init_state(
        self,
        rgb: np.ndarray,
        labels: np.ndarray | None = None,
        boxes: BoxesPrompt | None = None,
        frame_index: int = 0,
    ) -> tuple[TrackState, FrameResult]:
        """Start tracking on the prompt frame; returns the state and that frame's result.

        ``labels``: uint8 label map (0 background, ids kept). ``boxes``: (x, y, w, h) per object,
        ids 1..N (or a mapping id -> box); the mask is then predicted by the network inside each
        box (SiamMask-style). Both may be given (ids must differ). ``frame_index``: the input frame
        number of ``rgb``, reported as ``FrameResult.index`` (later frames count from it).
        """
        rgb = check_frame(rgb)  # uint8 RGB or InputError (float frames used to give garbage masks)
        height, width = rgb.shape[:2]
        if labels is None and not boxes:
            raise InputError("a first-frame mask or at least one box is needed")
        labels = self._prompt_labels(rgb, labels, boxes, frame_index)
        ids = [int(i) for i in np.unique(labels) if i != 0]
        if not ids:
            raise InputError("the first-frame mask contains no object")
        objects = [self._object_from_mask(object_id, labels == object_id) for object_id in ids]
        memory = AppearanceMemory.from_embedding(self.config.memory, self._embed(rgb, labels, objects))
        state = TrackState(width, height, objects, memory, _object_masks(labels, objects), frame_index=frame_index)
        state.colour_tables = self._colour_tables(rgb, labels, objects)
        state.last_result = self._first_result(state, labels)
        state.last_result.prompted = tuple(ids)
        return state, state.last_result

    def _colour_tables(self, rgb: np.ndarray, labels: np.ndarray, objects: list[ObjectState]) -> list[np.ndarray]:
        colour = self.config.colour
        if colour.weight <= 0.0:
            return []
        return [
            colour_table(rgb, labels, obj.object_id, mask_box(labels == obj.object_id), colour)  # type: ignore[arg-type]
            for obj in objects
        ]

    def _object_from_mask(self, object_id: int, mask: np.ndarray) -> ObjectState:
        x, y, w, h = mask_box(mask)  # type: ignore[misc]
        min_size = self.config.min_size
        obj = ObjectState(object_id, x + w / 2, y + h / 2, max(w, min_size), max(h, min_size))
        obj.area = float(np.count_nonzero(mask))
        return obj

    def _labels_from_boxes(self, rgb: np.ndarray, boxes: BoxesPrompt) -> np.ndarray:
        """Box prompt: the network segments the frame from a box-shaped template and prior.

        ``boxes``: a list (ids 1..N) or a mapping object id -> (x, y, w, h).
        """
        height, width = rgb.shape[:2]
        box_labels = np.zeros((height, width), np.uint8)
        objects = []
        items = boxes.items() if isinstance(boxes, dict) else enumerate(boxes, start=1)
        for object_id, (x, y, w, h) in items:
            x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
            x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
            if x1 <= x0 or y1 <= y0:
                raise InputError(f"box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} frame")
            box_labels[y0:y1, x0:x1] = object_id
            objects.append(ObjectState(object_id, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0))
        memory = AppearanceMemory.from_embedding(self.config.memory, self._embed(rgb, box_labels, objects))
        state = TrackState(width, height, objects, memory, _object_masks(box_labels, objects))
        result, matrices = self._search(state, rgb, box_prompt=True)
        logits = self._paste_frame(state, result.mask_logits, matrices)
        # Keep the prediction inside its (slightly grown) box, as a box prompt promises.
        labels = np.zeros((height, width), np.uint8)
        for i, obj in enumerate(objects):
            margin_x, margin_y = 0.05 * obj.w, 0.05 * obj.h
            inside = np.zeros((height, width), bool)
            inside[
                max(0, int(obj.cy - obj.h / 2 - margin_y)) : int(math.ceil(obj.cy + obj.h / 2 + margin_y)),
                max(0, int(obj.cx - obj.w / 2 - margin_x)) : int(math.ceil(obj.cx + obj.w / 2 + margin_x)),
            ] = True
            logits[i][~inside] = OUTSIDE_REGION_LOGIT
        if logits.shape[0]:
            best = logits.argmax(0)
            keep = logits.max(0) > self.config.mask_logit_threshold
            labels[keep] = np.asarray([o.object_id for o in objects], np.uint8)[best[keep]]
        for obj in objects:  # a box the network left empty falls back to the box itself
            if not (labels == obj.object_id).any():
                labels[(box_labels == obj.object_id) & (labels == 0)] = obj.object_id
        return labels

    # ------------------------------------------------------------------ per frame
    def _canvas_size(self, state: TrackState, obj: ObjectState, scale: float) -> tuple[int, int]:
        """Network input (H, W) this object wants, at its crop scale; multiples of 16."""
        if self.config.full_frame:
            height, width = _round16(state.height * scale), _round16(state.width * scale)
            if height * width > self.config.full_frame_max_pixels:
                raise InputError(
                    f"--full-frame would need a {width}x{height} network input for this {state.width}x"
                    f"{state.height} frame and a {obj.w:.0f}x{obj.h:.0f} object (limit "
                    f"{self.config.full_frame_max_pixels} pixels); use the default cropped search"
                )
            return height, width
        if not obj.lost:
            return self.search_size, self.search_size
        # Lost: widen the search area at the SAME scale (a bigger canvas, not a zoomed-out crop,
        # so the object still matches its template), up to the whole frame or lost_max_scale.
        side = self.search_size * lost_search_growth(obj.lost_frames, self.config.presence)
        return (
            max(self.search_size, min(_round16(side), _round16(state.height * scale * 2))),
            max(self.search_size, min(_round16(side), _round16(state.width * scale * 2))),
        )

    def _window_bias(self, grid_h: int, grid_w: int) -> np.ndarray:
        """Cosine-window logit bias for a canvas: 0 at the centre, strongly negative off the normal window."""
        key = (grid_h, grid_w)
        if key not in self._bias_cache:
            grid = self.score_size
            hann = np.hanning(grid + 2)[1:-1]
            window = np.outer(hann, hann).astype(np.float32)
            floor = -8.0 * self.config.window_influence
            bias = np.full((grid_h, grid_w), floor, np.float32)
            top, left = (grid_h - grid) // 2, (grid_w - grid) // 2
            bias[top : top + grid, left : left + grid] = floor * (1.0 - window / window.max())
            self._bias_cache[key] = bias
        return self._bias_cache[key]

    def _search(self, state: TrackState, rgb: np.ndarray, box_prompt: bool = False):
        """Crop every object's search canvas and prior, run the network, one forward per canvas size.

        Tracked objects share the normal canvas and go through one batched forward; a lost object's
        wider canvas is a forward of its own (objects of one size share it), so it never enlarges
        the other objects' canvases: that would cost every object the lost one's price and change
        the context the tracked ones are seen in. Returns the engine's
        :class:`~vosctl.engine.SearchResult` (``mask_logits[i]``: object i's mask logits over its
        own canvas, on the network's mask grid) and for each object the affine matrix from the frame
        to those logits (:func:`~vosctl.geometry.grid_matrix`), which is what pastes them.
        """
        objects = state.objects
        scales = [self.search_size / self._window_side(state, obj) for obj in objects]
        sizes = [self._canvas_size(state, obj, scale) for obj, scale in zip(objects, scales)]
        groups = canvas_groups(sizes)
        # CUDA: the frame goes to the device once, however many canvas groups crop it.
        source = self._upload(rgb) if self._on_device else rgb
        if len(groups) == 1:
            ((size, members),) = groups.items()
            return self._search_group(state, source, box_prompt, members, scales, size, 0, state.templates)
        n = len(objects)
        mask_logits: list[np.ndarray] = [np.empty((0, 0), np.float32)] * n
        peak, similarity, presence = (np.empty(n, np.float32) for _ in range(3))
        matrices: list[np.ndarray] = [np.empty((2, 3))] * n
        templates = state.templates
        for group, (size, members) in enumerate(groups.items()):
            result, group_matrices = self._search_group(
                state, source, box_prompt, members, scales, size, group, templates.select(members)
            )
            for j, i in enumerate(members):
                mask_logits[i], matrices[i] = result.mask_logits[j], group_matrices[j]
            peak[members], similarity[members], presence[members] = result.peak, result.similarity, result.presence
        return SearchResult(mask_logits, peak, similarity, presence), matrices  # type: ignore[arg-type]

    def _search_group(
        self,
        state: TrackState,
        source,
        box_prompt: bool,
        members: list[int],
        scales: list[float],
        size: tuple[int, int],
        group: int,
        templates: TemplateEmbedding,
    ):
        """One batched forward for the objects ``members``, all on an (H, W) = ``size`` canvas.

        ``source``: the RGB frame (numpy), or on CUDA the frame already on the device (``_upload``).
        """
        in_h, in_w = size
        n = len(members)
        matrices = []
        for i in members:
            obj, scale = state.objects[i], scales[i]
            if self.config.full_frame:  # the frame's top-left corner at the canvas origin
                matrices.append(np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]]))
                continue
            # The object's last position (moved ahead by its velocity, if motion.gain > 0) at the
            # canvas centre; long-lost objects sweep the frame.
            cx, cy = obj.cx, obj.cy
            if not obj.lost and self.config.motion.gain:  # off (0): no motion work per frame
                cx, cy = search_centre(cx, cy, obj.velocity, min(in_h, in_w) / scale, self.config.motion)
            if obj.lost and not box_prompt:
                window = min(in_h, in_w) / scale
                tile = sweep_centre(obj.lost_frames, self.config.presence, state.width, state.height, window)
                if tile is not None:
                    cx, cy = tile
            matrices.append(np.array([[scale, 0.0, in_w / 2 - scale * cx], [0.0, scale, in_h / 2 - scale * cy]]))
        if group == 0:
            if state.prior_buffer is None or state.prior_buffer.shape != (n, in_h, in_w):
                state.prior_buffer = np.empty((n, in_h, in_w), np.uint8)
                state.search_buffer = None if self._on_device else np.empty((n, in_h, in_w, 3), np.uint8)
            prior, search = state.prior_buffer, state.search_buffer
        else:  # further groups (lost objects): window-style scratch buffers, grown on demand
            prior = self._scratch(state, "prior", group, (n, in_h * in_w), np.uint8).reshape(n, in_h, in_w)
            search = None
            if not self._on_device:
                search = self._scratch(state, "search", group, (n, in_h * in_w * 3), np.uint8)
                search = search.reshape(n, in_h, in_w, 3)
        for j, (i, matrix) in enumerate(zip(members, matrices)):
            if state.objects[i].lost and not box_prompt:
                prior[j].fill(0)
            else:  # the previous mask, cropped like the search image (0/255 -> thresholded by the engine)
                state.prev_masks[i].crop(matrix, (in_w, in_h), out=prior[j])

        bias = None
        if not self.config.full_frame:
            # Tracked objects: motion penalty around the last position. Lost ones: none, search it all.
            window = self._window_bias(in_h // 16, in_w // 16)
            bias = np.empty((n, 1, *window.shape), np.float32)
            for j, i in enumerate(members):
                bias[j, 0] = 0.0 if (state.objects[i].lost and not box_prompt) else window
        if self._on_device:
            crops, prior_in, bias_in = self._device_inputs(source, matrices, (in_w, in_h), prior, bias)
            forward = self.engine.search_tensors
        else:
            assert search is not None
            for j, matrix in enumerate(matrices):
                crop_image(source, matrix, (in_w, in_h), out=search[j])
            crops, prior_in, bias_in, forward = search, prior, bias, self.engine.search
        region = self._mask_region(state, members, matrices, (in_h, in_w), box_prompt)
        result = forward(crops, templates, prior_in, bias_in, region)
        # The engine's mask logits lie on the network's mask grid, a fraction of the canvas.
        ratio = result.mask_logits.shape[1] / in_h
        if region is not None and self._region_result_doubtful(result, region, round(REGION_CELL * ratio)):
            result = forward(crops, templates, prior_in, bias_in, None)  # same crops, whole canvas
        if ratio != 1.0:  # paste the grid itself: one bilinear resampling, grid -> frame
            matrices = [grid_matrix(matrix, ratio) for matrix in matrices]
        return result, matrices

    def _region_result_doubtful(self, result: SearchResult, region: tuple[int, int, int, int], stride: int) -> bool:
        """Run this region search again on the whole canvas? (:func:`vosctl.geometry.region_run_doubtful`;
        ``stride``: mask-logit pixels per region cell)"""
        cfg = self.config
        # Above every presence threshold in use, also when a user raised them.
        presence, memory = cfg.presence, cfg.memory
        floor = max(REGION_MIN_PRESENCE, presence.found_presence, presence.lost_presence, memory.min_confidence)
        return region_run_doubtful(
            result.presence, result.mask_logits, region, cfg.mask_logit_threshold, floor, stride=stride
        )

    def _mask_region(
        self,
        state: TrackState,
        members: list[int],
        matrices: list[np.ndarray],
        canvas: tuple[int, int],
        box_prompt: bool,
    ) -> tuple[int, int, int, int] | None:
        """The canvas part the mask path runs on for these objects (None: all; see geometry.mask_region)."""
        cfg = self.config
        if cfg.mask_region >= 1.0 or cfg.full_frame or box_prompt:
            return None
        if not self.has_presence_head:  # their lost/found rule reads the appearance check itself
            return None
        if not getattr(self.engine, "supports_mask_region", False):
            return None
        if any(state.objects[i].lost for i in members):  # a lost object may be found anywhere
            return None
        boxes = [state.prev_masks[i].box_in(matrix) for i, matrix in zip(members, matrices)]
        # The smaller part first (never one larger than mask_region); one trace per part and canvas size.
        fractions = (min(cfg.mask_region_small, cfg.mask_region), cfg.mask_region)
        return smallest_mask_region(canvas, boxes, fractions, cfg.mask_region_margin)

    def _upload(self, rgb: np.ndarray):
        """CUDA: the frame to the device through a pinned buffer (asynchronous), as (3, H, W) float."""
        import torch

        device = self.engine.torch_device
        if self._pinned is None or self._pinned.shape != rgb.shape:
            # Page-locked so the upload is a real asynchronous DMA (only CUDA has pinned memory).
            self._pinned = torch.empty(rgb.shape, dtype=torch.uint8, pin_memory=device.type == "cuda")
        self._pinned.numpy()[...] = rgb
        return self._pinned.to(device, non_blocking=True).permute(2, 0, 1).float()

    def _device_inputs(self, frame, matrices, size, prior, bias):
        """CUDA: the crops made on the GPU from the uploaded frame, with the prior and bias on the device."""
        search = crop_torch(frame, np.stack(matrices), size, PAD_COLOUR)
        return (search.contiguous(memory_format=self.engine.input_format), *self.engine.prior_and_bias(prior, bias))

    def _scratch(self, state: TrackState, name: str, index: int, shape: tuple[int, int], dtype) -> np.ndarray:
        """A reused window-sized array (grown when a window is bigger than any before)."""
        key = (name, index)
        size = shape[0] * shape[1]
        buffer = state.scratch.get(key)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = state.scratch[key] = np.empty(max(size, 1), dtype)
        return buffer[:size].reshape(shape)

    def _paste_windows(
        self, state: TrackState, mask_logits: np.ndarray | list[np.ndarray], matrices: list[np.ndarray]
    ) -> tuple[list[Window], list[np.ndarray]]:
        """Mask logits on each object's canvas grid -> its logits over its window of the frame only.

        Logits are resampled (bilinear), not probabilities: the network's mask loss saw bilinearly
        upsampled logits, so the threshold's crossing falls where it was trained to, and SAM 2 and
        Cutie resample theirs the same way (round 14: J&F +0.0003 / +0.0013 on the 24 DAVIS
        training sequences over pasting probabilities). ``matrices`` map the frame onto the grid
        the logits lie on (:func:`~vosctl.geometry.grid_matrix`), so the network's stride-2 grid is
        resampled once, straight to the frame (round 15: training J&F +0.0019, F +0.0043 over
        upsampling it to the canvas first and resampling that).
        """
        windows, logits = [], []
        for i, matrix in enumerate(matrices):
            canvas_h, canvas_w = mask_logits[i].shape  # objects of different canvas groups differ
            x0, y0, x1, y1 = canvas_window(matrix, canvas_w, canvas_h, state.width, state.height)
            local = self._scratch(state, "logits", i, (y1 - y0, x1 - x0), np.float32)
            if local.size:
                paste_crop(
                    mask_logits[i], shift_matrix(matrix, x0, y0), x1 - x0, y1 - y0, out=local, fill=OUTSIDE_REGION_LOGIT
                )
            windows.append((x0, y0, x1, y1))
            logits.append(local)
        return windows, logits

    def _paste_frame(
        self, state: TrackState, mask_logits: np.ndarray | list[np.ndarray], matrices: list[np.ndarray]
    ) -> np.ndarray:
        """Frame-sized (N, H, W) mask logits: for the one-off box prompt, never per frame."""
        logits = np.full((len(matrices), state.height, state.width), OUTSIDE_REGION_LOGIT, np.float32)
        windows, local = self._paste_windows(state, mask_logits, matrices)
        for i, (x0, y0, x1, y1) in enumerate(windows):
            logits[i, y0:y1, x0:x1] = local[i]
        return logits

    def step(self, state: TrackState, rgb: np.ndarray) -> FrameResult:
        """Segment the next frame and advance the state.

        After the network everything is window-local: each object's mask logits, threshold,
        area, box and next prior live only over its crop window, and the frame-sized label map is
        written once (zeros, then each window), so the cost follows the objects, not the frame.
        """
        rgb = check_frame(rgb)
        if rgb.shape[:2] != (state.height, state.width):
            raise InputError(
                f"frame {state.frame_index + 1} is {rgb.shape[1]}x{rgb.shape[0]}, expected {state.width}x{state.height}"
            )
        state.frame_index += 1
        state.steps += 1
        cfg = self.config
        result, matrices = self._search(state, rgb)
        windows, logits = self._paste_windows(state, result.mask_logits, matrices)
        # Each object's own mask, before objects compete for pixels (into reused window buffers).
        threshold = cfg.mask_logit_threshold
        own = [
            np.greater(w, threshold, out=self._scratch(state, "own", i, w.shape, np.bool_))
            for i, w in enumerate(logits)
        ]
        visible: list[bool] = []
        decisions = []
        for i, obj in enumerate(state.objects):
            signals = PresenceSignals(
                score=float(result.peak[i]),
                similarity=float(result.similarity[i]),
                area=float(np.count_nonzero(own[i])),
                last_area=obj.area,
                presence=float(result.presence[i]) if self.has_presence_head else None,
            )
            decision = update_presence(obj.lost, obj.low_frames, signals, cfg.presence)
            obj.low_frames = decision.low_frames
            decisions.append(decision)
            visible.append(decision.visible)

        ids = np.asarray([o.object_id for o in state.objects], np.uint8)
        labels = np.zeros((state.height, state.width), np.uint8)  # the only frame-sized write
        # Lost objects write nothing (rather than drift onto background): no window to merge.
        drawn = [w if ok else (0, 0, 0, 0) for w, ok in zip(windows, visible)]
        merge_windows(
            labels,
            drawn,
            logits,
            own,
            state.prev_masks,
            ids,
            cfg.overlap_prior_weight,
        )

        # The colour pass below breaks overlap ties with the same previous masks as this merge.
        previous_masks = list(state.prev_masks) if state.colour_tables else state.prev_masks

        reported: list[tuple[BoxXYWH | None, int]] = []  # per object: the box and area of its written mask
        for i, obj in enumerate(state.objects):
            # The reported confidence: the learned presence where the network has it, else the centre score.
            obj.score = float(result.presence[i] if self.has_presence_head else result.peak[i])
            box, area = None, 0
            if not visible[i]:
                obj.velocity = (0.0, 0.0)  # unseen this frame: no displacement to trust
                if decisions[i].lost:
                    obj.lost, obj.lost_frames = True, obj.lost_frames + 1
                    state.prev_masks[i] = LocalMask.empty()
                # else held (weak evidence, patience left): nothing drawn, place and prior kept
            else:
                x0, y0, x1, y1 = windows[i]
                final = labels[y0:y1, x0:x1] == obj.object_id
                box, area = _window_box_and_area(final, x0, y0)
                if box is None:
                    # Found but hidden behind another object: keep its place, use its own mask as prior.
                    state.prev_masks[i] = LocalMask.from_window(x0, y0, own[i])
                    obj.lost, obj.lost_frames = False, 0
                else:
                    state.prev_masks[i] = LocalMask.from_window(x0, y0, final)
                    self._update_geometry(obj, box, area)
            reported.append((box, area))
        self._remember(state, rgb, labels, result.presence, visible)
        if state.colour_tables:
            # The colour cue refines what is written, never what the tracker carries on (prior,
            # place, size, memory: all taken above): fed back, it grew masks into background that
            # shares the object's colours. The label map is rewritten in place, window by window.
            self._rewrite_with_colour(state, rgb, labels, drawn, logits, ids, previous_masks)
            for i, obj in enumerate(state.objects):
                if visible[i]:
                    x0, y0, x1, y1 = windows[i]
                    reported[i] = _window_box_and_area(labels[y0:y1, x0:x1] == obj.object_id, x0, y0)
        results = {
            obj.object_id: ObjectResult(obj.object_id, _int_box(box), area, round(obj.score, 4), obj.lost)
            for obj, (box, area) in zip(state.objects, reported)
        }
        state.last_result = FrameResult(state.frame_index, labels, results)
        return state.last_result

    def _rewrite_with_colour(
        self,
        state: TrackState,
        rgb: np.ndarray,
        labels: np.ndarray,
        drawn: list[Window],
        logits: list[np.ndarray],
        ids: np.ndarray,
        previous_masks: list[LocalMask],
    ) -> None:
        """Redraw the drawn objects' windows of ``labels`` from their logits plus colour evidence.

        ``drawn``: each object's window as the first merge drew it ((0, 0, 0, 0) for one not drawn).
        """
        cfg = self.config
        refined, own = [], []
        for i, ((x0, y0, x1, y1), local, table) in enumerate(zip(drawn, logits, state.colour_tables)):
            if x1 <= x0 or y1 <= y0:  # not drawn (lost or held): merge_windows skips it, reads nothing
                refined.append(local)
                own.append(_NOTHING_DRAWN)
                continue
            out = self._scratch(state, "colour", i, local.shape, np.float32)
            band = self._scratch(state, "colour_band", i, out.shape, np.bool_)
            refine_logits(out, band, local, rgb[y0:y1, x0:x1], table, cfg.mask_logit_threshold, cfg.colour)
            refined.append(out)
            mask = self._scratch(state, "colour_own", i, out.shape, np.bool_)
            own.append(np.greater(out, cfg.mask_logit_threshold, out=mask))
        for x0, y0, x1, y1 in drawn:  # only drawn windows hold pixels: the map is empty afterwards
            labels[y0:y1, x0:x1] = 0
        merge_windows(labels, drawn, refined, own, previous_masks, ids, cfg.overlap_prior_weight)

    def _remember(
        self, state: TrackState, rgb: np.ndarray, labels: np.ndarray, presence: np.ndarray, visible: list[bool]
    ) -> None:
        """Every few frames, confident objects add this frame's appearance to their memory bank."""
        mem = self.config.memory
        if mem.bank_size <= 0 or state.steps % max(1, mem.update_every):
            return
        chosen = [
            i
            for i, obj in enumerate(state.objects)
            if visible[i] and not obj.lost and (not self.has_presence_head or presence[i] >= mem.min_confidence)
        ]
        chosen = [i for i in chosen if state.prev_masks[i].mask.size and state.prev_masks[i].mask.any()]
        if not chosen:
            return
        objects = [state.objects[i] for i in chosen]
        embedding = self._embed(rgb, labels, objects)
        for row, i in enumerate(chosen):
            state.memory.add_recent(i, embedding.select([row]))

    def _update_geometry(self, obj: ObjectState, box: tuple[float, float, float, float], area: int) -> None:
        """New position from the mask; size smoothed and rate-limited so one bad mask cannot blow the window up."""
        cfg = self.config
        x, y, w, h = box
        cx, cy = x + w / 2, y + h / 2
        if obj.lost:  # re-found: take its size as it is, and no velocity yet
            obj.velocity = (0.0, 0.0)
            obj.w, obj.h = max(cfg.min_size, w), max(cfg.min_size, h)
        else:
            if cfg.motion.gain:  # the velocity is only read when motion prediction is on
                obj.velocity = update_velocity(obj.velocity, (cx - obj.cx, cy - obj.cy), cfg.motion)
            lo, hi = 1 / cfg.max_size_change, cfg.max_size_change
            new_w = np.clip((1 - cfg.size_smoothing) * obj.w + cfg.size_smoothing * w, obj.w * lo, obj.w * hi)
            new_h = np.clip((1 - cfg.size_smoothing) * obj.h + cfg.size_smoothing * h, obj.h * lo, obj.h * hi)
            obj.w, obj.h = max(cfg.min_size, float(new_w)), max(cfg.min_size, float(new_h))
        obj.cx, obj.cy = cx, cy
        obj.lost, obj.lost_frames = False, 0
        obj.area = 0.7 * obj.area + 0.3 * area if obj.area else float(area)

    def _first_result(self, state: TrackState, labels: np.ndarray) -> FrameResult:
        """The prompt frame's result: the prompt's objects, all present."""
        results = {}
        for obj in state.objects:
            mask = labels == obj.object_id
            results[obj.object_id] = ObjectResult(
                obj.object_id, _int_box(mask_box(mask)), int(np.count_nonzero(mask)), 1.0, False
            )
        return FrameResult(state.frame_index, labels, results)

    # ------------------------------------------------------------------ prompts on any frame
    def _prompt_labels(
        self,
        rgb: np.ndarray,
        labels: np.ndarray | None,
        boxes: BoxesPrompt | None,
        frame_index: int,
    ) -> np.ndarray:
        """One uint8 label map from a prompt's mask and/or boxes (boxes segmented by the network)."""
        height, width = rgb.shape[:2]
        out = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (height, width):
                shape = "x".join(str(v) for v in labels.shape[::-1])
                raise InputError(f"mask at frame {frame_index} is {shape} but the frames are {width}x{height}")
            # ids 1..254 or InputError (int64 id 300 used to wrap to 44); emptiness is judged below
            out = check_labels(labels, allow_empty=True)
        if boxes:
            box_labels = self._labels_from_boxes(rgb, boxes)
            if out is None:
                return box_labels
            ids = boxes.keys() if isinstance(boxes, dict) else range(1, len(boxes) + 1)
            twice = sorted(set(ids) & {int(v) for v in np.unique(out) if v})
            if twice:
                raise InputError(f"two prompts for object {twice[0]} at frame {frame_index} (a mask and a box)")
            out = np.where(out > 0, out, box_labels).astype(np.uint8)  # the mask is the more precise
        if out is None:
            raise InputError(f"the prompt at frame {frame_index} has neither a mask nor a box")
        return out

    def add_prompt(
        self,
        state: TrackState,
        frame_index: int,
        rgb: np.ndarray,
        labels: np.ndarray | None = None,
        boxes: BoxesPrompt | None = None,
    ) -> FrameResult:
        """Correct objects or add new ones on frame ``frame_index`` (``rgb``); returns that frame's result.

        An id of ``labels`` (or of ``boxes``: a list means ids 1..N, a mapping names them) that is
        tracked is replaced by the prompt: it is tracked on from this mask and its appearance memory
        takes this frame as its trusted template. A new id is a new object from this frame on. Ids
        the prompt does not mention keep being tracked; the prompt's pixels are taken from them.

        ``frame_index == state.frame_index`` corrects the frame last returned by ``init_state`` /
        ``step`` / ``add_prompt``; any other frame (the next one, in either direction) is segmented
        first, then the prompt is applied.
        """
        rgb = check_frame(rgb)
        if rgb.shape[:2] != (state.height, state.width):
            raise InputError(
                f"frame {frame_index} is {rgb.shape[1]}x{rgb.shape[0]}, expected {state.width}x{state.height}"
            )
        if labels is None and not boxes:
            raise InputError(f"the prompt at frame {frame_index} has neither a mask nor a box")
        prompt = self._prompt_labels(rgb, labels, boxes, frame_index)
        ids = [int(i) for i in np.unique(prompt) if i != 0]
        if not ids:
            raise InputError(f"the prompt at frame {frame_index} contains no object")
        if frame_index == state.frame_index and state.last_result is not None:
            base = state.last_result
        elif {o.object_id for o in state.objects} <= set(ids):
            # Every tracked object is given again: the prompt is the whole answer for this frame.
            state.frame_index = frame_index
            base = FrameResult(frame_index, np.zeros((state.height, state.width), np.uint8), {})
        else:
            state.frame_index = frame_index - 1  # step() advances it by one
            base = self.step(state, rgb)
        return self._apply_prompt(state, rgb, prompt, ids, base)

    def _apply_prompt(
        self, state: TrackState, rgb: np.ndarray, prompt: np.ndarray, ids: list[int], base: FrameResult
    ) -> FrameResult:
        """Merge the prompt into ``base`` (the frame as tracked) and reset the prompted objects."""
        taken = prompt > 0
        labels = base.labels.copy()
        labels[np.isin(labels, ids)] = 0  # a corrected object is exactly its prompt
        labels[taken] = prompt[taken]
        prompted = [self._object_from_mask(object_id, labels == object_id) for object_id in ids]
        embedding = self._embed(rgb, labels, prompted)
        position = {obj.object_id: i for i, obj in enumerate(state.objects)}
        # Priors are rebuilt through _object_masks, whatever their storage, for the prompted objects
        # and for the objects the prompt took pixels from.
        touched = {int(v) for v in np.unique(base.labels[taken])} - set(ids) - {0}
        for i, obj in enumerate(state.objects):
            if obj.object_id in touched:
                state.prev_masks[i] = _object_masks(labels, [obj])[0]
        tables = self._colour_tables(rgb, labels, prompted)
        added = []
        for j, obj in enumerate(prompted):
            if obj.object_id in position:  # a correction
                i = position[obj.object_id]
                state.objects[i] = obj
                state.memory.set_trusted(i, embedding.select([j]))
                if tables:
                    state.colour_tables[i] = tables[j]
                state.prev_masks[i] = _object_masks(labels, [obj])[0]
            else:  # a new object
                state.objects.append(obj)
                state.memory.append_object(embedding.select([j]))
                if tables:
                    state.colour_tables.append(tables[j])
                added.append(obj)
        if added:
            rows = _object_masks(labels, added)
            if isinstance(state.prev_masks, list):
                state.prev_masks.extend(rows)
            else:
                state.prev_masks = np.concatenate([state.prev_masks, rows])
            _drop_buffers(state)  # sized for the old object count
        objects: dict[int, ObjectResult] = {}
        for obj in state.objects:
            mask = labels == obj.object_id
            before = base.objects.get(obj.object_id)
            fresh = obj.object_id in ids or before is None
            box = mask_box(mask)
            objects[obj.object_id] = ObjectResult(
                obj.object_id,
                _int_box(box),
                int(np.count_nonzero(mask)) if box is not None else 0,
                1.0 if fresh else before.score,  # type: ignore[union-attr]
                False if fresh else before.lost,  # type: ignore[union-attr]
            )
        result = FrameResult(state.frame_index, labels, objects, prompted=tuple(ids))
        state.last_result = result
        return result

    # ------------------------------------------------------------------ generator API
    def track(
        self,
        frames: Iterable[Any],
        labels: np.ndarray | None = None,
        boxes: list[tuple[float, float, float, float]] | None = None,
        *,
        prompts: Mapping[int, Any] | None = None,
        direction: str = "forward",
        start_frame: int | None = None,
    ) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame, named by its input frame number.

        ``frames``: RGB arrays, :class:`vosctl.io.Frame` objects (their index and timestamp are
        carried into the results, and ``result.frame`` is the frame), or a source from
        :func:`vosctl.io.open_video`. ``labels`` / ``boxes``: the prompt of the start frame.
        ``prompts``: ``{frame: labels | boxes | Prompt}`` on any frames (corrections and new
        objects, see :meth:`add_prompt`). ``start_frame``: where tracking starts (default: the
        frame of ``labels``/``boxes``, i.e. the first frame; with ``prompts`` only, the earliest
        prompt, or the latest one going backward); earlier frames are skipped going forward.

        ``direction``: ``"forward"`` (start frame to the end), ``"backward"`` (start frame down to
        0, results in that order) or ``"both"`` (the backward pass first, frames start-1 .. 0,
        then the forward pass, start .. end; each pass has its own state and applies the prompts
        it reaches). Backward needs frames that can be read backwards: a list (or other sequence)
        of frames, or an :func:`~vosctl.io.open_video` source, read in bounded-memory chunks.
        Each result says which pass produced it (``result.direction``) and which ids were
        prompted on its frame (``result.prompted``).
        """
        from vosctl.prompting import DIRECTIONS, Prompt, check_directions, normalise_prompts

        if direction not in DIRECTIONS:
            raise InputError(f"unknown direction '{direction}' (use {', '.join(DIRECTIONS)})")
        table = normalise_prompts(prompts)
        if labels is not None or boxes:
            first = 0 if start_frame is None else start_frame
            if start_frame is None and direction == "forward":
                first = -1  # "the first frame", whatever its number: resolved when it arrives
            if first in table:
                raise InputError(f"frame {first} has a prompt twice (labels=/boxes= and prompts=)")
            table[first] = Prompt(labels=labels, boxes=dict(enumerate(boxes or [], start=1)))
        if not table:
            raise InputError("a first-frame mask or at least one box is needed")
        if start_frame is None:
            start_frame = min(table) if direction != "backward" else max(table)
        if direction == "forward":
            yield from self._pass(_forward_frames(frames), table, start_frame, "forward", True, strict=True)
            return
        if start_frame < 0:
            raise InputError(f"start frame {start_frame} is negative")
        check_directions(table, start_frame, direction)
        backward = _backward_frames(frames, start_frame)
        yield from self._pass(backward, table, start_frame, "backward", direction == "backward")
        if direction == "both":
            yield from self._pass(_forward_frames(frames, start_frame), table, start_frame, "forward", True)

    def _pass(
        self,
        frames: Iterator[tuple[int, np.ndarray, Any]],
        prompts: dict[int, Any],
        start: int,
        direction: str,
        emit_start: bool,
        strict: bool = False,
    ) -> Iterator[FrameResult]:
        """One pass over ``(index, rgb, frame)`` in its order, from the start frame's prompt.

        ``strict``: prompts behind the start frame are an error (no other pass reaches them).
        """
        from vosctl.prompting import check_directions

        state: TrackState | None = None
        step = 1 if direction == "forward" else -1
        checked = not strict
        for index, rgb, frame in frames:
            if state is None:
                if start == -1:  # labels=/boxes= belong to the first frame, whatever its number
                    if index in prompts:
                        raise InputError(f"frame {index} has a prompt twice (labels=/boxes= and prompts=)")
                    prompts = {index if f == -1 else f: p for f, p in prompts.items()}
                    start = index
                if not checked:
                    check_directions(prompts, start, direction)
                    checked = True
                if (index - start) * step < 0:
                    continue
                if index != start:
                    raise InputError(f"there is no frame {start} to start from (the frames begin at {index})")
                pending = {f for f in prompts if (f - start) * step > 0}
                prompt = prompts[start]
                state, result = self.init_state(rgb, prompt.labels, prompt.boxes, frame_index=index)
                if not emit_start:
                    continue
            elif index in pending:
                prompt = prompts[index]
                pending.discard(index)
                result = self.add_prompt(state, index, rgb, prompt.labels, prompt.boxes)
            else:
                state.frame_index = index - 1  # step() advances it by one: results keep input numbers
                result = self.step(state, rgb)
            result.direction = direction
            result.frame = frame
            result.timestamp = getattr(frame, "timestamp", None)
            yield result
        if state is None:
            raise InputError(f"there is no frame {start} to start from (the input has fewer frames)")
        if pending:
            missed = min(pending, key=lambda f: abs(f - start))
            raise InputError(f"prompt at frame {missed} is beyond the last frame ({state.frame_index})")


def _unpack(item: Any, counter: int) -> tuple[int, np.ndarray, Any]:
    """(index, rgb, frame) from an array (numbered by position) or a Frame-like object."""
    rgb = getattr(item, "rgb", None)
    if rgb is None:
        return counter, item, None
    return int(getattr(item, "index", counter)), rgb, item


def _forward_frames(frames: Any, start: int = 0) -> Iterator[tuple[int, np.ndarray, Any]]:
    from vosctl.io.video import FrameSource

    if start > 0 and isinstance(frames, FrameSource):
        from vosctl.io.reverse import reopen

        with reopen(frames, start_frame=start) as source:  # its own reader; the backward one is done
            yield from (_unpack(frame, frame.index) for frame in source)
        return
    if start > 0 and isinstance(frames, Sequence):
        for i in range(start, len(frames)):
            yield _unpack(frames[i], i)
        return
    for counter, item in enumerate(frames):
        yield _unpack(item, counter)


def _backward_frames(frames: Any, start: int) -> Iterator[tuple[int, np.ndarray, Any]]:
    from vosctl.io.video import FrameSource

    if isinstance(frames, FrameSource):
        from vosctl.io.reverse import read_backward

        yield from (_unpack(frame, frame.index) for frame in read_backward(frames, start))
        return
    if isinstance(frames, Sequence):
        if start >= len(frames):
            raise InputError(f"start frame {start} is beyond the last frame ({len(frames) - 1})")
        for i in range(start, -1, -1):
            yield _unpack(frames[i], i)
        return
    raise InputError(
        "going backward needs frames that can be read backwards: a list of frames or vosctl.io.open_video(...)"
    )


def _drop_buffers(state: TrackState) -> None:
    """Forget the reused per-frame buffers (they are sized for the object count); the next frame re-creates them."""
    for item in fields(state):
        if item.name.endswith("_buffer"):
            setattr(state, item.name, None)


def _object_masks(labels: np.ndarray, objects: list[ObjectState]) -> list[LocalMask]:
    """Each object's mask over its box, from a label map (once per prompt, not per frame)."""
    return [LocalMask.from_frame(labels == o.object_id) for o in objects]


def canvas_groups(sizes: list[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """Object indices by canvas size (H, W), smallest canvas first: one batched forward per group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(size, []).append(index)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0] * item[0][1], item[0])))


def _round16(value: float) -> int:
    return max(16, int(math.ceil(value / 16.0)) * 16)


def _window_box_and_area(mask: np.ndarray, x0: int, y0: int) -> tuple[BoxXYWH | None, int]:
    """A window-local boolean mask's box in frame coordinates (None when empty) and its pixel count."""
    local_box = mask_box(mask)
    if local_box is None:
        return None, 0
    return (local_box[0] + x0, local_box[1] + y0, local_box[2], local_box[3]), int(np.count_nonzero(mask))


def _int_box(box: tuple[float, float, float, float] | None) -> tuple[int, int, int, int] | None:
    return None if box is None else (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
