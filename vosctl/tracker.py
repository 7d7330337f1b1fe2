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
``vosctl.presence`` visible / lost / re-acquired, lost-search widening
``vosctl.memory``   appearance memory (trusted prompt entry + recent bank)
``vosctl.merge``    per-object probabilities -> one label map
==================  ======================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vosctl.engine import Engine
from vosctl.errors import InputError
from vosctl.geometry import crop_image, crop_matrix, mask_box, paste_crop, search_side, template_side
from vosctl.memory import AppearanceMemory, MemoryConfig
from vosctl.merge import merge_objects
from vosctl.model.network import SiamDMN, TemplateEmbedding
from vosctl.presence import PresenceConfig, PresenceSignals, lost_search_growth, sweep_centre, update_presence
from vosctl.results import FrameResult, ObjectResult


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
    precision: str = "auto"  # "auto" (bf16 where the CPU/GPU supports it), "bf16" or "fp32"
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)


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


@dataclass
class TrackState:
    """Everything the tracker knows between frames; no hidden globals."""

    width: int
    height: int
    objects: list[ObjectState]
    memory: AppearanceMemory
    prev_masks: np.ndarray  # (N, H, W) uint8 0/255: each object's last mask, the next frame's prior
    frame_index: int = 0
    # Reused buffers (the per-frame loop must not allocate per object per frame).
    search_buffer: np.ndarray | None = None
    prior_buffer: np.ndarray | None = None
    prob_buffer: np.ndarray | None = None
    own_buffer: np.ndarray | None = None

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
    ) -> None:
        self.config = config or SegmenterConfig()
        self.engine = Engine(model, device=device, precision=self.config.precision)
        self.torch_device = self.engine.torch_device
        self.device = self.engine.device
        self.use_bf16 = self.engine.precision == "bf16"
        self.model_name = model_name
        self.metadata: dict = {}
        net = model.config
        self.search_size = net.search_size
        self.template_size = net.template_size
        self.score_size = net.score_size
        self.has_presence_head = bool(getattr(net, "presence_head", False))
        self.search_factor = net.search_size / net.template_size
        self._bias_cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = "default", device: str = "auto", config: SegmenterConfig | None = None
    ) -> Segmenter:
        from vosctl.model.checkpoint import load_checkpoint

        model, metadata = load_checkpoint(name_or_path)
        segmenter = cls(model, device=device, config=config, model_name=str(metadata.get("name", name_or_path)))
        segmenter.metadata = metadata
        return segmenter

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
            masks[i] = crop_image((labels == obj.object_id).astype(np.float32), matrix, size)
        return self.engine.embed(crops, masks)

    # ------------------------------------------------------------------ state
    def init_state(
        self,
        rgb: np.ndarray,
        labels: np.ndarray | None = None,
        boxes: list[tuple[float, float, float, float]] | None = None,
    ) -> tuple[TrackState, FrameResult]:
        """Start tracking from the first frame; returns the state and the first frame's result.

        ``labels``: uint8 label map (0 background, ids kept). ``boxes``: (x, y, w, h) per object,
        ids 1..N; the first mask is then predicted by the network inside each box (SiamMask-style).
        """
        height, width = rgb.shape[:2]
        if labels is None and not boxes:
            raise InputError("a first-frame mask or at least one box is needed")
        if labels is not None:
            if labels.shape != (height, width):
                raise InputError(f"mask is {labels.shape[1]}x{labels.shape[0]} but the frames are {width}x{height}")
            labels = np.ascontiguousarray(labels, dtype=np.uint8)
        else:
            labels = self._labels_from_boxes(rgb, boxes or [])
        ids = [int(i) for i in np.unique(labels) if i != 0]
        if not ids:
            raise InputError("the first-frame mask contains no object")
        objects = [self._object_from_mask(object_id, labels == object_id) for object_id in ids]
        memory = AppearanceMemory.from_embedding(self.config.memory, self._embed(rgb, labels, objects))
        state = TrackState(width, height, objects, memory, _object_masks(labels, objects))
        return state, self._first_result(state, labels)

    def _object_from_mask(self, object_id: int, mask: np.ndarray) -> ObjectState:
        x, y, w, h = mask_box(mask)  # type: ignore[misc]
        min_size = self.config.min_size
        obj = ObjectState(object_id, x + w / 2, y + h / 2, max(w, min_size), max(h, min_size))
        obj.area = float(np.count_nonzero(mask))
        return obj

    def _labels_from_boxes(self, rgb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """Box prompt: the network segments the first frame from a box-shaped template and prior."""
        height, width = rgb.shape[:2]
        box_labels = np.zeros((height, width), np.uint8)
        objects = []
        for object_id, (x, y, w, h) in enumerate(boxes, start=1):
            x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
            x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
            if x1 <= x0 or y1 <= y0:
                raise InputError(f"box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} frame")
            box_labels[y0:y1, x0:x1] = object_id
            objects.append(ObjectState(object_id, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0))
        memory = AppearanceMemory.from_embedding(self.config.memory, self._embed(rgb, box_labels, objects))
        state = TrackState(width, height, objects, memory, _object_masks(box_labels, objects))
        result, matrices = self._search(state, rgb, box_prompt=True)
        probs = self._paste(state, result.mask_prob, matrices)
        # Keep the prediction inside its (slightly grown) box, as a box prompt promises.
        labels = np.zeros((height, width), np.uint8)
        for i, obj in enumerate(objects):
            margin_x, margin_y = 0.05 * obj.w, 0.05 * obj.h
            inside = np.zeros((height, width), bool)
            inside[
                max(0, int(obj.cy - obj.h / 2 - margin_y)) : int(math.ceil(obj.cy + obj.h / 2 + margin_y)),
                max(0, int(obj.cx - obj.w / 2 - margin_x)) : int(math.ceil(obj.cx + obj.w / 2 + margin_x)),
            ] = True
            probs[i] *= inside
        if probs.shape[0]:
            best = probs.argmax(0)
            keep = probs.max(0) > self.config.mask_threshold
            labels[keep] = np.asarray([o.object_id for o in objects], np.uint8)[best[keep]]
        for obj in objects:  # a box the network left empty falls back to the box itself
            if not (labels == obj.object_id).any():
                labels[(box_labels == obj.object_id) & (labels == 0)] = obj.object_id
        return labels

    # ------------------------------------------------------------------ per frame
    def _canvas_size(self, state: TrackState, obj: ObjectState, scale: float) -> tuple[int, int]:
        """Network input (H, W) this object wants, at its crop scale; multiples of 16."""
        if self.config.full_frame:
            return _round16(state.height * scale), _round16(state.width * scale)
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
        """Crop every object's search canvas and prior, run one batched forward.

        Returns the engine's :class:`~vosctl.engine.SearchResult` (crop coordinates) and the
        frame->canvas affine matrix of each object.
        """
        objects = state.objects
        n = len(objects)
        scales = [self.search_size / self._window_side(state, obj) for obj in objects]
        sizes = [self._canvas_size(state, obj, scale) for obj, scale in zip(objects, scales)]
        in_h, in_w = max(h for h, _ in sizes), max(w for _, w in sizes)
        matrices = []
        for obj, scale, (own_h, own_w) in zip(objects, scales, sizes):
            if self.config.full_frame:  # the frame's top-left corner at the canvas origin
                matrices.append(np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]]))
                continue
            # The object's last position at the canvas centre; long-lost objects sweep the frame.
            cx, cy = obj.cx, obj.cy
            if obj.lost and not box_prompt:
                window = min(own_h, own_w) / scale
                tile = sweep_centre(obj.lost_frames, self.config.presence, state.width, state.height, window)
                if tile is not None:
                    cx, cy = tile
            matrices.append(np.array([[scale, 0.0, in_w / 2 - scale * cx], [0.0, scale, in_h / 2 - scale * cy]]))
        if state.search_buffer is None or state.search_buffer.shape != (n, in_h, in_w, 3):
            state.search_buffer = np.empty((n, in_h, in_w, 3), np.uint8)
            state.prior_buffer = np.empty((n, in_h, in_w), np.uint8)
        search, prior = state.search_buffer, state.prior_buffer
        assert prior is not None
        for i, (obj, matrix) in enumerate(zip(objects, matrices)):
            crop_image(rgb, matrix, (in_w, in_h), out=search[i])
            if obj.lost and not box_prompt:
                prior[i].fill(0)
            else:  # the previous mask, cropped like the search image (0/255 -> thresholded by the engine)
                crop_image(state.prev_masks[i], matrix, (in_w, in_h), out=prior[i])

        bias = None
        if not self.config.full_frame:
            # Tracked objects: motion penalty around the last position. Lost ones: none, search it all.
            window = self._window_bias(in_h // 16, in_w // 16)
            bias = np.empty((n, 1, *window.shape), np.float32)
            for i, obj in enumerate(objects):
                bias[i, 0] = 0.0 if (obj.lost and not box_prompt) else window
        return self.engine.search(search, state.templates, prior, bias), matrices

    def _paste(self, state: TrackState, mask_prob: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
        """Crop-space probabilities -> full-frame (N, H, W) probabilities (a reused buffer)."""
        n = len(matrices)
        if state.prob_buffer is None or state.prob_buffer.shape[0] != n:
            state.prob_buffer = np.empty((n, state.height, state.width), np.float32)
        probs = state.prob_buffer
        for i, matrix in enumerate(matrices):
            paste_crop(mask_prob[i], matrix, state.width, state.height, out=probs[i])
        return probs

    def step(self, state: TrackState, rgb: np.ndarray) -> FrameResult:
        """Segment the next frame and advance the state."""
        if rgb.shape[:2] != (state.height, state.width):
            raise InputError(
                f"frame {state.frame_index + 1} is {rgb.shape[1]}x{rgb.shape[0]}, expected {state.width}x{state.height}"
            )
        state.frame_index += 1
        cfg = self.config
        result, matrices = self._search(state, rgb)
        probs = self._paste(state, result.mask_prob, matrices)
        # Each object's own mask, before objects compete for pixels (into a reused buffer).
        if state.own_buffer is None or state.own_buffer.shape != probs.shape:
            state.own_buffer = np.empty(probs.shape, bool)
        own = np.greater(probs, cfg.mask_threshold, out=state.own_buffer)
        own_area = own.reshape(len(state.objects), -1).sum(1)
        visible = []
        for i, obj in enumerate(state.objects):
            signals = PresenceSignals(
                score=float(result.peak[i]),
                similarity=float(result.similarity[i]),
                area=float(own_area[i]),
                last_area=obj.area,
                presence=float(result.presence[i]) if self.has_presence_head else None,
            )
            decision = update_presence(obj.lost, obj.low_frames, signals, cfg.presence)
            obj.low_frames = decision.low_frames
            ok = decision.visible
            if not ok:
                probs[i].fill(0.0)  # lost: write nothing rather than drift onto background
                own[i].fill(False)
            visible.append(ok)

        ids = np.asarray([o.object_id for o in state.objects], np.uint8)
        labels = merge_objects(probs, own, state.prev_masks, ids, cfg.overlap_prior_weight)

        masks = state.prev_masks
        results: dict[int, ObjectResult] = {}
        for i, obj in enumerate(state.objects):
            # The reported confidence: the learned presence where the network has it, else the centre score.
            score = float(result.presence[i] if self.has_presence_head else result.peak[i])
            obj.score = score
            final = labels == obj.object_id if visible[i] else None
            box = mask_box(final) if final is not None else None
            area = int(np.count_nonzero(final)) if box is not None else 0
            if not visible[i]:
                obj.lost, obj.lost_frames = True, obj.lost_frames + 1
                masks[i].fill(0)
            elif box is None:
                # Found but hidden behind another object: keep its place, use its own mask as prior.
                np.multiply(own[i], 255, out=masks[i], casting="unsafe")
                obj.lost, obj.lost_frames = False, 0
            else:
                np.multiply(final, 255, out=masks[i], casting="unsafe")
                self._update_geometry(obj, box, area)
            results[obj.object_id] = ObjectResult(obj.object_id, _int_box(box), area, round(score, 4), obj.lost)
        self._remember(state, rgb, labels, result.presence, visible)
        return FrameResult(state.frame_index, labels, results)

    def _remember(
        self, state: TrackState, rgb: np.ndarray, labels: np.ndarray, presence: np.ndarray, visible: list[bool]
    ) -> None:
        """Every few frames, confident objects add this frame's appearance to their memory bank."""
        mem = self.config.memory
        if mem.bank_size <= 0 or state.frame_index % max(1, mem.update_every):
            return
        chosen = [
            i
            for i, obj in enumerate(state.objects)
            if visible[i] and not obj.lost and (not self.has_presence_head or presence[i] >= mem.min_confidence)
        ]
        chosen = [i for i in chosen if state.prev_masks[i].any()]
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
        obj.cx, obj.cy = x + w / 2, y + h / 2
        if obj.lost:  # re-found: take its size as it is
            obj.w, obj.h = max(cfg.min_size, w), max(cfg.min_size, h)
        else:
            lo, hi = 1 / cfg.max_size_change, cfg.max_size_change
            new_w = np.clip((1 - cfg.size_smoothing) * obj.w + cfg.size_smoothing * w, obj.w * lo, obj.w * hi)
            new_h = np.clip((1 - cfg.size_smoothing) * obj.h + cfg.size_smoothing * h, obj.h * lo, obj.h * hi)
            obj.w, obj.h = max(cfg.min_size, float(new_w)), max(cfg.min_size, float(new_h))
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

    # ------------------------------------------------------------------ generator API
    def track(
        self,
        frames: Iterable[np.ndarray],
        labels: np.ndarray | None = None,
        boxes: list[tuple[float, float, float, float]] | None = None,
    ) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame; the first frame carries the prompt."""
        iterator = iter(frames)
        try:
            first = next(iterator)
        except StopIteration:
            return
        state, result = self.init_state(first, labels=labels, boxes=boxes)
        yield result
        for rgb in iterator:
            yield self.step(state, rgb)


def _object_masks(labels: np.ndarray, objects: list[ObjectState]) -> np.ndarray:
    """(N, H, W) uint8 0/255 masks, one per object, from a label map."""
    ids = np.asarray([o.object_id for o in objects], np.uint8)
    return np.multiply(labels[None] == ids[:, None, None], 255, dtype=np.uint8)


def _round16(value: float) -> int:
    return max(16, int(math.ceil(value / 16.0)) * 16)


def _int_box(box: tuple[float, float, float, float] | None) -> tuple[int, int, int, int] | None:
    return None if box is None else (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
