"""Training pairs: (template crop + mask, search crop + mask, previous-mask prior, present flag).

Three sources, mixed per batch:
- DAVIS-format video folders: template and search frames from one sequence within ``max_gap``
  frames; the prior is the ground truth of the frame before the search frame (real motion).
- Static images with masks (DUTS): two random homographies of the same image make the pair;
  colour/blur changes, pasted distractor objects and occluders make it hard.
- Procedural textured shapes on textured backgrounds, with a crossing look-alike distractor:
  cheap, unlimited, and close to the clean synthetic videos users test with.
Every sample uses the crop geometry of :mod:`vosctl.geometry` with SiamMask-style scale and shift
jitter, so the network sees what the tracker will feed it, including tracking errors. A fraction of
pairs are negatives (target absent from the search crop) so the score learns to say "lost".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vosctl.errors import InputError
from vosctl.eval.davis import VOID_LABEL, YEARS, read_label_png
from vosctl.geometry import crop_image, crop_matrix, mask_box, search_side, template_side

cv2.setNumThreads(1)


@dataclass(frozen=True)
class PairConfig:
    template_size: int = 128
    search_size: int = 256
    context: float = 0.5
    search_factor: float = 2.0  # search window side / template window side (SiamMask: 255/127)
    max_gap: int = 25
    scale_jitter: float = 0.25  # log-uniform range of the search window scale
    shift_jitter: float = 0.12  # std of the search centre shift, as a fraction of the window side
    negative_prob: float = 0.1
    empty_prior_prob: float = 0.1
    perturb_prior_prob: float = 0.6
    # Search window never wider than the frame (the tracker's ``cap_search_to_frame``).
    cap_to_frame: bool = False
    # Look-alikes: a flipped, rescaled, recoloured copy of the target pasted beside it and left
    # out of the mask; and negatives that show only such a copy of the template's object.
    lookalike_prob: float = 0.0
    # Up to this many copies at once (uniform 1..max): a flock of identical objects (birds, a crowd)
    # where the target touches several look-alikes, not one.
    lookalike_max: int = 1
    # Of those copies, the fraction pasted with the target's own colours (flipped at most): a real
    # flock of identical birds, where only position and the previous mask tell the target apart.
    lookalike_exact_prob: float = 0.0
    # The tracker's spill in the prior: with look-alikes beside the target, the previous mask also
    # covers (part of) one of them, so the network learns to drop a spill instead of copying it
    # (a mask that spreads onto a touching neighbour and then follows it).
    spill_prior_prob: float = 0.0
    hard_negative_prob: float = 0.0  # fraction of the negatives
    # Real look-alikes: a static image whose mask holds several separate objects of similar size (a
    # pack of dogs, two bottles; ~250 of DUTS's 5,500) becomes, with this probability, a pair whose
    # target is one of them; the others stay in view, left out of the mask. Unlike pasted copies,
    # they have their own pose and share the target's context (round 23: pasted copies are told
    # apart by context, which a real flock does not offer).
    instance_prob: float = 0.0
    # Appearance memory: a second, recent template averaged with the first (the tracker's bank).
    second_template_prob: float = 0.0
    recent_gap: int = 10
    compress_prob: float = 0.0  # JPEG re-encoding of the search crop (video-codec artefacts)
    static_prior_motion: float = 0.0  # DUTS: std of the prior's shift (fraction of the object size)
    # The tracker's own failure modes in the prior: a part of the object missing (a cut-off side,
    # a lost disconnected part) or a spurious blob, so the network learns to restore the object
    # from the template instead of copying a wrong prior (a shrinking mask stays shrunk otherwise).
    partial_prior_prob: float = 0.0


@dataclass
class Sample:
    template: np.ndarray  # (T, T, 3) uint8
    template_mask: np.ndarray  # (T, T) float32 0..1
    search: np.ndarray  # (S, S, 3) uint8
    search_mask: np.ndarray  # (S, S) float32 0..1
    prior: np.ndarray  # (S, S) float32 0..1
    present: bool
    # A second (recent) template, averaged with the first with weight ``mix`` (1: first only).
    template2: np.ndarray | None = None
    template2_mask: np.ndarray | None = None
    mix: float = 1.0


# --------------------------------------------------------------------------- sources
class DavisFrames:
    """All frames and masks of some DAVIS-layout sequences, held in memory (uint8).

    ``year`` "2016": one object per sequence, any non-zero pixel (``masks`` are 0/1). "2017": the
    annotations' palette ids, one object each (``masks`` are label maps; the void label 255 is
    background, as the evaluation toolkit reads it). With ``instances`` False a 2017 sequence's
    objects are merged into one (the control for instance-level training: the same frames, without
    other instances as negatives). ``objects[k]`` lists sequence k's ids and, where it has several,
    ``present[k][id]`` the frames where that object covers at least ``MIN_TEMPLATE_PIXELS`` (a
    template to crop).
    """

    MIN_TEMPLATE_PIXELS = 64

    def __init__(self, root: str | Path, sequences: list[str], year: str = "2016", instances: bool = True) -> None:
        if year not in YEARS:
            raise InputError(f"unknown DAVIS year '{year}' (use {' or '.join(YEARS)})")
        self.root = Path(root)
        self.frames: list[list[np.ndarray]] = []
        self.masks: list[list[np.ndarray]] = []
        self.objects: list[list[int]] = []
        self.present: list[dict[int, np.ndarray]] = []
        self.names = sequences
        for seq in sequences:
            jpg_dir = self.root / "JPEGImages" / "480p" / seq
            ann_dir = self.root / "Annotations" / "480p" / seq
            names = sorted(p.stem for p in ann_dir.glob("*.png"))
            frames, masks = [], []
            for name in names:
                bgr = cv2.imread(str(jpg_dir / f"{name}.jpg"), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise FileNotFoundError(jpg_dir / f"{name}.jpg")
                if year == "2016":
                    # Greyscale read: drops the alpha of the odd grey+alpha annotation (bear/00077.png).
                    mask = (cv2.imread(str(ann_dir / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
                else:
                    mask = read_label_png(ann_dir / f"{name}.png", f"{seq}/{name}")
                    mask[mask == VOID_LABEL] = 0
                    if not instances:
                        mask = (mask > 0).astype(np.uint8)
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                masks.append(mask)
            ids = sorted(set().union(*(np.unique(m).tolist() for m in masks)) - {0})
            if len(ids) == 1 and ids[0] != 1:  # one object with another id: 0/1 masks, as a 2016 sequence
                masks, ids = [(m > 0).astype(np.uint8) for m in masks], [1]
            self.frames.append(frames)
            self.masks.append(masks)
            self.objects.append(ids or [1])
            # Only a pair from a multi-object sequence looks up where its target is visible.
            visible = {i: [np.count_nonzero(m == i) >= self.MIN_TEMPLATE_PIXELS for m in masks] for i in ids}
            self.present.append({i: np.flatnonzero(v) for i, v in visible.items()} if len(ids) > 1 else {})


def fit_within(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Shrink an image and its mask so the longer side is at most ``max_side`` (never enlarge)."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image, mask
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return (
        cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST),
    )


def instance_components(mask: np.ndarray, min_share: float = 0.3, min_fraction: float = 0.002) -> np.ndarray | None:
    """Label map (uint8, 0 = none, 1..k) of a mask's separate objects of similar size, or None.

    Connected components at least ``min_share`` of the largest one's area and ``min_fraction`` of
    the image count; None unless there are two or more (one object, or one with crumbs).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 3:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero((areas >= min_share * areas.max()) & (areas >= min_fraction * mask.size))
    if keep.size < 2 or keep.size > 255:
        return None
    lookup = np.zeros(count, np.uint8)
    lookup[keep + 1] = np.arange(1, keep.size + 1, dtype=np.uint8)
    return lookup[labels]


class StaticImages:
    """Images + binary object masks (DUTS layout: images/<n>.jpg, masks/<n>.png, list.txt).

    ``instances`` maps the index of each image whose mask holds several similar objects to their
    label map (:func:`instance_components`), for instance-level pairs (``PairConfig.instance_prob``).
    """

    def __init__(self, root: str | Path, limit: int | None = None, max_side: int = 400) -> None:
        root = Path(root)
        names = (root / "list.txt").read_text().split()
        if limit:
            names = names[:limit]
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.instances: dict[int, np.ndarray] = {}
        for name in names:
            bgr = cv2.imread(str(root / "images" / f"{name}.jpg"), cv2.IMREAD_COLOR)
            mask = cv2.imread(str(root / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if bgr is None or mask is None:
                continue
            bgr, mask = fit_within(bgr, mask, max_side)
            self.images.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            self.masks.append((mask > 0).astype(np.uint8))
            components = instance_components(self.masks[-1])
            if components is not None:
                self.instances[len(self.masks) - 1] = components


# --------------------------------------------------------------------------- helpers
def _random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour noise plus fine grain: a cheap, endlessly varied texture."""
    cells = int(rng.integers(2, 12))
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    base = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    kind = rng.integers(0, 3)
    if kind == 1:  # stripes
        period = rng.uniform(4, 24)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        base += (stripes[..., None] * rng.uniform(20, 60)).astype(np.float32)
    elif kind == 2:  # checker
        size = int(rng.integers(4, 20))
        yy, xx = np.mgrid[0:height, 0:width]
        checker = (((yy // size) + (xx // size)) % 2).astype(np.float32) * 2 - 1
        base += (checker[..., None] * rng.uniform(20, 60)).astype(np.float32)
    base += rng.normal(0, rng.uniform(2, 20), size=(height, width, 1)).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def _random_shape_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cx, cy = width / 2, height / 2
    kind = rng.integers(0, 4)
    if kind == 0:
        mask[:] = 1  # rectangle (the whole patch)
    elif kind == 1:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(width / 2) - 1, int(height / 2) - 1), 0, 0, 360, 1, -1)
    else:
        count = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, count))
        radii = rng.uniform(0.5, 1.0, count)
        pts = np.stack(
            [cx + radii * np.cos(angles) * (width / 2 - 1), cy + radii * np.sin(angles) * (height / 2 - 1)], 1
        )
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask


def _photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Brightness/contrast/colour jitter, sometimes blur or noise (on a crop: cheap)."""
    out = image.astype(np.float32)
    out = out * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25)
    out = out * rng.uniform(0.9, 1.1, size=(1, 1, 3))
    if rng.random() < 0.2:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < 0.15:
        out += rng.normal(0, 6, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _perturb_prior(rng: np.random.Generator, prior: np.ndarray, cfg: PairConfig) -> np.ndarray:
    """Simulate the tracker's previous mask: slightly moved, scaled, grown or eroded."""
    size = prior.shape[0]
    if rng.random() < cfg.perturb_prior_prob:
        angle = rng.uniform(-6, 6)
        scale = math.exp(rng.uniform(-0.08, 0.08))
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        matrix[:, 2] += rng.normal(0, 0.03 * size, 2)
        prior = cv2.warpAffine(prior, matrix, (size, size), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.35:
        k = int(rng.integers(1, 5)) * 2 + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        prior = cv2.dilate(prior, kernel) if rng.random() < 0.5 else cv2.erode(prior, kernel)
    prior = (prior > 0.5).astype(np.float32)
    # Guarded so configs without it draw exactly the random numbers they always did.
    if cfg.partial_prior_prob > 0 and rng.random() < cfg.partial_prior_prob:
        prior = corrupt_prior(rng, prior)
    return prior


def corrupt_prior(rng: np.random.Generator, prior: np.ndarray) -> np.ndarray:
    """A tracker-like error in a binary prior: a missing side, a dropped part, or a spurious blob."""
    ys, xs = np.nonzero(prior > 0.5)
    if len(ys) < 16:
        return prior
    out = prior.copy()
    mode = rng.random()
    if mode < 0.25:
        count, components, stats, _ = cv2.connectedComponentsWithStats(out.astype(np.uint8), connectivity=8)
        if count > 2:  # keep the largest part only (a thin link or a detached part was lost)
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            return (components == largest).astype(np.float32)
        mode = 0.5
    if mode < 0.8:  # a half-plane cut removing 15-60 % of the object
        angle = rng.uniform(0, 2 * math.pi)
        projection = xs * math.cos(angle) + ys * math.sin(angle)
        cut = np.quantile(projection, rng.uniform(0.15, 0.6))
        drop = projection < cut
        out[ys[drop], xs[drop]] = 0.0
        return out
    # A spurious blob near the object (a look-alike or the background leaking in).
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    centre = (
        int(rng.uniform(xs.min() - 0.5 * w, xs.max() + 0.5 * w)),
        int(rng.uniform(ys.min() - 0.5 * h, ys.max() + 0.5 * h)),
    )
    axes = (max(2, int(w * rng.uniform(0.1, 0.4))), max(2, int(h * rng.uniform(0.1, 0.4))))
    cv2.ellipse(out, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return out


def spill_prior(rng: np.random.Generator, prior: np.ndarray, lookalike: np.ndarray) -> np.ndarray:
    """The prior plus the tracker's spill onto a look-alike: all of it, or the part near the prior.

    ``lookalike``: bool map of look-alike pixels that are not the target. A spill that spreads from
    the object covers the neighbour where it is close; one that jumped covers it whole.
    """
    if not lookalike.any():
        return prior
    if rng.random() < 0.5:
        spill = lookalike
    else:
        ys, xs = np.nonzero(prior > 0.5)
        if len(ys) == 0:
            return prior
        size = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        k = 2 * max(1, int(size * rng.uniform(0.1, 0.5))) + 1
        near = cv2.dilate((prior > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        spill = lookalike & (near > 0)
    return np.maximum(prior, spill.astype(np.float32))


def _jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 85))])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else image


def _lookalike(
    rng: np.random.Generator, patch: np.ndarray, pmask: np.ndarray, scale: float, recolour: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A same-looking copy of an object: flipped, rescaled, mildly recoloured (unless not ``recolour``)."""
    if rng.random() < 0.5:
        patch, pmask = patch[:, ::-1], pmask[:, ::-1]
    scale *= math.exp(rng.uniform(-0.25, 0.25))
    size = (max(2, round(patch.shape[1] * scale)), max(2, round(patch.shape[0] * scale)))
    patch = cv2.resize(np.ascontiguousarray(patch), size)
    pmask = cv2.resize(np.ascontiguousarray(pmask), size, interpolation=cv2.INTER_NEAREST)
    if not recolour:
        return patch, pmask
    recoloured = patch.astype(np.float32) * rng.uniform(0.8, 1.2, size=(1, 1, 3)) + rng.uniform(-15, 15)
    return np.clip(recoloured, 0, 255).astype(np.uint8), pmask


def _paste(
    canvas: np.ndarray, canvas_mask: np.ndarray | None, patch: np.ndarray, patch_mask: np.ndarray, x: int, y: int
) -> np.ndarray:
    """Paste ``patch`` where ``patch_mask`` is set, at (x, y) (clipped); returns the pasted-area mask."""
    h, w = canvas.shape[:2]
    ph, pw = patch_mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    area = np.zeros((h, w), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return area
    sub_mask = patch_mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(bool)
    canvas[y0:y1, x0:x1][sub_mask] = patch[y0 - y : y1 - y, x0 - x : x1 - x][sub_mask]
    area[y0:y1, x0:x1] = sub_mask
    if canvas_mask is not None:
        canvas_mask[area.astype(bool)] = 0
    return area


# --------------------------------------------------------------------------- pair sampler
class _ObjectMasks:
    """One object's 0/1 masks of a sequence's label maps, made when a frame is indexed."""

    def __init__(self, labels: list[np.ndarray], target: int) -> None:
        self.labels, self.target = labels, target

    def __getitem__(self, index: int) -> np.ndarray:
        return (self.labels[index] == self.target).astype(np.uint8)


class PairSampler:
    """Draws training samples from the available sources with fixed mixing weights."""

    def __init__(
        self,
        cfg: PairConfig,
        davis: DavisFrames | None,
        static: StaticImages | None,
        weights: tuple[float, float, float] = (0.5, 0.3, 0.2),
    ) -> None:
        self.cfg = cfg
        self.davis = davis
        self.static = static
        w = np.array(weights, dtype=np.float64)
        if davis is None or not davis.frames:
            w[0] = 0
        if static is None or not static.images:
            w[1] = 0
        self.weights = w / w.sum()

    # -- crops -------------------------------------------------------------
    def _make_sample(
        self,
        rng: np.random.Generator,
        t_img: np.ndarray,
        t_mask: np.ndarray,
        s_img: np.ndarray,
        s_mask: np.ndarray,
        prior_mask: np.ndarray | None,
        negative_img: np.ndarray | None = None,
        second_template: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Sample | None:
        cfg = self.cfg
        first = self._template_crop(rng, t_img, t_mask)
        if first is None:
            return None
        template, template_mask, t_box, side_t = first
        second = None
        if second_template is not None and rng.random() < cfg.second_template_prob:
            second = self._template_crop(rng, *second_template)

        s_box = mask_box(s_mask)
        present = s_box is not None and negative_img is None
        ref = s_box if s_box is not None else t_box
        sx, sy, sw, sh = ref
        frame_h, frame_w = s_img.shape[:2]
        side_s = search_side(sw, sh, cfg.context, cfg.search_factor, frame_w, frame_h, cfg.cap_to_frame)
        side_s *= math.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))
        shift = np.clip(rng.normal(0, cfg.shift_jitter, 2), -0.3, 0.3) * side_s
        scx, scy = sx + sw / 2 + shift[0], sy + sh / 2 + shift[1]
        if negative_img is not None:
            # Target absent: a window from another image, at a random place and scale.
            s_img = negative_img
            nh, nw = s_img.shape[:2]
            side_s = min(side_s, 1.5 * max(nh, nw))
            scx, scy = rng.uniform(0, nw), rng.uniform(0, nh)
        sm = crop_matrix(scx, scy, side_s, cfg.search_size)
        search = crop_image(s_img, sm, cfg.search_size)
        copies_area = None  # where look-alike copies are visible (kept only for the prior's spill)
        if present:
            search_mask = crop_image(s_mask.astype(np.float32), sm, cfg.search_size)
            if rng.random() < cfg.lookalike_prob:
                # Guarded so configs without it draw exactly the random numbers they always did.
                copies = 1 if cfg.lookalike_max <= 1 else int(rng.integers(1, cfg.lookalike_max + 1))
                for _ in range(copies):
                    exact = cfg.lookalike_exact_prob > 0 and rng.random() < cfg.lookalike_exact_prob
                    area = self._add_lookalike_beside(rng, search, search_mask, recolour=not exact)
                    if cfg.spill_prior_prob > 0:
                        copies_area = area if copies_area is None else copies_area | area
            if search_mask.sum() < 4:  # shifted out of the window entirely (or covered)
                present = False
        elif negative_img is not None and rng.random() < cfg.hard_negative_prob:
            # Only a look-alike of the template's object is in view: the answer is still "absent".
            tmask = template_mask > 0.5
            box = mask_box(tmask)
            if box is not None:
                x, y, w, h = (int(v) for v in box)
                scale = (cfg.search_size / side_s) / (cfg.template_size / side_t)
                patch, pmask = _lookalike(
                    rng, template[y : y + h, x : x + w], tmask[y : y + h, x : x + w].astype(np.uint8), scale
                )
                px = int(rng.uniform(-0.2, 0.8) * cfg.search_size)
                py = int(rng.uniform(-0.2, 0.8) * cfg.search_size)
                _paste(search, None, patch, pmask, px, py)
        if not present:
            search_mask = np.zeros((cfg.search_size, cfg.search_size), np.float32)
        if rng.random() < cfg.compress_prob:
            search = _jpeg(rng, search)

        if not present or prior_mask is None or rng.random() < cfg.empty_prior_prob:
            prior = np.zeros_like(search_mask)
        else:
            prior = _perturb_prior(rng, crop_image(prior_mask.astype(np.float32), sm, cfg.search_size), cfg)
            if copies_area is not None and rng.random() < cfg.spill_prior_prob:
                prior = spill_prior(rng, prior, copies_area & (search_mask < 0.5))
        sample = Sample(
            template=_photometric(rng, template) if rng.random() < 0.3 else template,
            template_mask=template_mask,
            search=_photometric(rng, search),
            search_mask=search_mask,
            prior=prior,
            present=present,
        )
        if second is not None:
            sample.template2, sample.template2_mask = second[0], second[1]
            sample.mix = 0.5
        return sample

    def _template_crop(
        self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float], float] | None:
        """Template crop + mask around the object (small SiamMask-style jitter), its box and window side."""
        cfg = self.cfg
        box = mask_box(mask)
        if box is None:
            return None
        x, y, w, h = box
        side = template_side(w, h, cfg.context) * math.exp(rng.uniform(-0.05, 0.05))
        cx, cy = x + w / 2 + rng.normal(0, 0.03 * side), y + h / 2 + rng.normal(0, 0.03 * side)
        matrix = crop_matrix(cx, cy, side, cfg.template_size)
        crop = crop_image(image, matrix, cfg.template_size)
        crop_mask = crop_image(mask.astype(np.float32), matrix, cfg.template_size)
        return crop, crop_mask, box, side

    @staticmethod
    def _add_lookalike_beside(
        rng: np.random.Generator, search: np.ndarray, search_mask: np.ndarray, recolour: bool = True
    ) -> np.ndarray:
        """Paste a look-alike copy of the target next to it (in place), excluded from the mask.

        Returns where the copy was pasted (bool, the search crop's size; behind the target it is
        partly hidden, so the caller intersects it with what is not the target).
        """
        inside = search_mask > 0.5
        box = mask_box(inside)
        if box is None:
            return np.zeros(inside.shape, bool)
        x, y, w, h = (int(v) for v in box)
        patch, pmask = _lookalike(
            rng, search[y : y + h, x : x + w], inside[y : y + h, x : x + w].astype(np.uint8), 1.0, recolour
        )
        angle = rng.uniform(0, 2 * math.pi)
        distance = rng.uniform(0.6, 1.2) * max(w, h)
        cx = x + w / 2 + math.cos(angle) * distance
        cy = y + h / 2 + math.sin(angle) * distance
        px, py = int(cx - patch.shape[1] / 2), int(cy - patch.shape[0] / 2)
        if rng.random() < 0.5:  # the copy passes behind the target
            behind = search.copy()
            area = _paste(behind, None, patch, pmask, px, py)
            search[~inside] = behind[~inside]
        else:  # or in front of it, hiding part of it
            area = _paste(search, search_mask, patch, pmask, px, py)
        return area.astype(bool)

    # -- sources -----------------------------------------------------------
    def _video_sample(self, rng: np.random.Generator) -> Sample | None:
        assert self.davis is not None
        seq = int(rng.integers(len(self.davis.frames)))
        frames, masks = self.davis.frames[seq], self.davis.masks[seq]
        n = len(frames)
        ids = self.davis.objects[seq]
        if len(ids) > 1:
            # Several objects: the target is one of them; the others stay in view, out of its mask:
            # real instance-level negatives (another bird of the flock, another dancer), which neither
            # pasted copies nor single images can supply (rounds 23-24). The template frame is one
            # where the target is visible. Single-object sequences draw exactly what they always did.
            target = ids[int(rng.integers(len(ids)))]
            visible = self.davis.present[seq][target]
            if visible.size == 0:
                return None
            t = int(visible[int(rng.integers(visible.size))])
            masks = _ObjectMasks(masks, target)
        else:
            t = int(rng.integers(n))
        gap = int(rng.integers(1, self.cfg.max_gap + 1)) * (1 if rng.random() < 0.5 else -1)
        s = int(np.clip(t + gap, 0, n - 1))
        if s == t:
            s = min(t + 1, n - 1) if t < n - 1 else t - 1
        step = 1 if s > t else -1
        prev = s - step * int(rng.integers(1, 4))
        prev = int(np.clip(prev, 0, n - 1))
        recent = int(np.clip(s - step * int(rng.integers(1, self.cfg.recent_gap + 1)), 0, n - 1))
        negative = None
        if rng.random() < self.cfg.negative_prob:
            other = (
                (seq + int(rng.integers(1, len(self.davis.frames)))) % len(self.davis.frames)
                if len(self.davis.frames) > 1
                else seq
            )
            negative = self.davis.frames[other][int(rng.integers(len(self.davis.frames[other])))]
        return self._make_sample(
            rng, frames[t], masks[t], frames[s], masks[s], masks[prev], negative, (frames[recent], masks[recent])
        )

    def _warp(
        self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, strength: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random homography (affine + mild perspective), same canvas size."""
        h, w = mask.shape
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        angle = rng.uniform(-20, 20) * strength
        scale = math.exp(rng.uniform(-0.3, 0.3) * strength)
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        dst = (np.hstack([src, np.ones((4, 1), np.float32)]) @ rot.T).astype(np.float32)
        dst += rng.normal(0, 0.03 * max(h, w) * strength, dst.shape).astype(np.float32)
        dst += rng.uniform(-0.15, 0.15, 2).astype(np.float32) * np.float32([w, h]) * strength
        homography = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(image, homography, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        msk = cv2.warpPerspective(mask, homography, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        return img, msk

    def _object_patch(self, rng: np.random.Generator, scale_to: float) -> tuple[np.ndarray, np.ndarray] | None:
        """A random other object from the static set, cut out by its mask and resized."""
        assert self.static is not None
        k = int(rng.integers(len(self.static.images)))
        box = mask_box(self.static.masks[k])
        if box is None:
            return None
        x, y, w, h = (int(v) for v in box)
        patch = self.static.images[k][y : y + h, x : x + w]
        pmask = self.static.masks[k][y : y + h, x : x + w]
        factor = scale_to / max(w, h)
        size = (max(2, round(w * factor)), max(2, round(h * factor)))
        return cv2.resize(patch, size), cv2.resize(pmask, size, interpolation=cv2.INTER_NEAREST)

    def _static_sample(self, rng: np.random.Generator) -> Sample | None:
        assert self.static is not None
        # Guarded so configs without instance pairs draw exactly the random numbers they always did.
        if self.cfg.instance_prob > 0 and self.static.instances and rng.random() < self.cfg.instance_prob:
            indices = list(self.static.instances)
            k = indices[int(rng.integers(len(indices)))]
            labels = self.static.instances[k]
            image = self.static.images[k]
            mask = (labels == int(rng.integers(1, int(labels.max()) + 1))).astype(np.uint8)
        else:
            k = int(rng.integers(len(self.static.images)))
            image, mask = self.static.images[k], self.static.masks[k]
        t_img, t_mask = self._warp(rng, image, mask, 0.5)
        s_img, s_mask = self._warp(rng, image, mask, 1.0)
        s_img = s_img.copy()
        s_mask = s_mask.copy()
        prior_mask = s_mask.copy()  # prior = the object before distractors/occluders moved in
        prior_box = mask_box(prior_mask)
        if self.cfg.static_prior_motion > 0 and prior_box is not None:
            # The previous frame's mask is never where the object is now: move it as motion would.
            size = max(prior_box[2], prior_box[3])
            shift = rng.normal(0, self.cfg.static_prior_motion * size, 2)
            scale = math.exp(rng.normal(0, 0.06))
            centre = (prior_box[0] + prior_box[2] / 2, prior_box[1] + prior_box[3] / 2)
            matrix = cv2.getRotationMatrix2D(centre, rng.normal(0, 3), scale)
            matrix[:, 2] += shift
            prior_mask = cv2.warpAffine(prior_mask, matrix, prior_mask.shape[::-1], flags=cv2.INTER_NEAREST)
        box = mask_box(s_mask)
        if box is not None and rng.random() < 0.5:  # distractor object near the target
            patch = self._object_patch(rng, max(box[2], box[3]) * rng.uniform(0.5, 1.2))
            if patch is not None:
                px = int(box[0] + rng.uniform(-1.0, 1.5) * box[2])
                py = int(box[1] + rng.uniform(-1.0, 1.5) * box[3])
                _paste(s_img, s_mask, patch[0], patch[1], px, py)
        if box is not None and rng.random() < 0.2:  # occluder over part of the target
            patch = self._object_patch(rng, max(box[2], box[3]) * rng.uniform(0.3, 0.6))
            if patch is not None:
                px = int(box[0] + rng.uniform(-0.2, 0.8) * box[2])
                py = int(box[1] + rng.uniform(-0.2, 0.8) * box[3])
                _paste(s_img, s_mask, patch[0], patch[1], px, py)
        negative = None
        if rng.random() < self.cfg.negative_prob:
            negative = self.static.images[int(rng.integers(len(self.static.images)))]
        second = self._warp(rng, image, mask, 0.7) if rng.random() < self.cfg.second_template_prob else None
        return self._make_sample(rng, t_img, t_mask, s_img, s_mask, prior_mask, negative, second)

    def _synthetic_sample(self, rng: np.random.Generator) -> Sample | None:
        """Textured shape(s) moving over a textured background; sometimes a crossing look-alike."""
        h, w = int(rng.integers(120, 360)), int(rng.integers(160, 480))
        if self.static is not None and self.static.images and rng.random() < 0.5:
            bg = self.static.images[int(rng.integers(len(self.static.images)))]
            bg = cv2.resize(bg, (w, h))
        else:
            bg = _random_texture(rng, h, w)
        size = int(min(h, w) * rng.uniform(0.12, 0.45))
        oh, ow = max(6, int(size * rng.uniform(0.6, 1.4))), max(6, int(size * rng.uniform(0.6, 1.4)))
        shape = _random_shape_mask(rng, oh, ow)
        texture = _random_texture(rng, oh, ow)
        distractor = None
        if rng.random() < 0.5:
            same_look = rng.random() < 0.4
            dshape = _random_shape_mask(rng, oh, ow) if not same_look else shape
            dtex = _random_texture(rng, oh, ow) if not same_look or rng.random() < 0.5 else texture
            distractor = (dtex, dshape)

        def render(
            pos: tuple[int, int], dpos: tuple[int, int], distractor_on_top: bool
        ) -> tuple[np.ndarray, np.ndarray]:
            frame = bg.copy()
            mask = np.zeros((h, w), np.uint8)
            if distractor is not None and not distractor_on_top:
                _paste(frame, None, distractor[0], distractor[1], *dpos)
            mask |= _paste(frame, None, texture, shape, *pos)
            if distractor is not None and distractor_on_top:
                _paste(frame, mask, distractor[0], distractor[1], *dpos)
            return frame, mask

        p0 = (int(rng.integers(-ow // 3, w - 2 * ow // 3)), int(rng.integers(-oh // 3, h - 2 * oh // 3)))
        velocity = rng.normal(0, size * 0.15, 2)
        p_prev = (int(p0[0] + velocity[0] * 4), int(p0[1] + velocity[1] * 4))
        p1 = (int(p0[0] + velocity[0] * 5), int(p0[1] + velocity[1] * 5))
        d0 = (int(rng.integers(0, max(1, w - ow))), int(rng.integers(0, max(1, h - oh))))
        # The distractor heads towards the target so the two often overlap in the search frame.
        d1 = (
            int((d0[0] + p1[0]) / 2 + rng.normal(0, size * 0.3)),
            int((d0[1] + p1[1]) / 2 + rng.normal(0, size * 0.3)),
        )
        on_top = bool(rng.random() < 0.3)
        t_img, t_mask = render(p0, d0, False)
        s_img, s_mask = render(p1, d1, on_top)
        prev_img, prev_mask = render(p_prev, d1, on_top)
        negative = _random_texture(rng, h, w) if rng.random() < self.cfg.negative_prob else None
        return self._make_sample(rng, t_img, t_mask, s_img, s_mask, prev_mask, negative, (prev_img, prev_mask))

    def sample(self, rng: np.random.Generator) -> Sample:
        makers = (self._video_sample, self._static_sample, self._synthetic_sample)
        while True:
            source = int(rng.choice(3, p=self.weights))
            sample = makers[source](rng)
            if sample is not None:
                return sample

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        samples = [self.sample(rng) for _ in range(size)]
        # Samples without a second template repeat the first (weight 0 in the mixture).
        second = [
            (s.template2, s.template2_mask) if s.template2 is not None else (s.template, s.template_mask)
            for s in samples
        ]
        return {
            "template2": np.stack([t for t, _ in second]),
            "template2_mask": np.stack([m for _, m in second]),
            "mix": np.array([s.mix for s in samples], np.float32),
            "template": np.stack([s.template for s in samples]),
            "template_mask": np.stack([s.template_mask for s in samples]),
            "search": np.stack([s.search for s in samples]),
            "search_mask": np.stack([s.search_mask for s in samples]),
            "prior": np.stack([s.prior for s in samples]),
            "present": np.array([s.present for s in samples]),
        }


def default_sequences(root: str | Path, year: str = "2016") -> list[str]:
    """The training split's names (``ImageSets/<year>/train.txt``), or every annotated sequence."""
    path = Path(root) / "ImageSets" / year / "train.txt"
    if path.exists():
        return path.read_text().split()
    return sorted(os.listdir(Path(root) / "Annotations" / "480p"))
