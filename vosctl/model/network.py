"""SiamDMN: Siamese Dynamic Mask Estimation Network.

Data flow for one object (all objects of a frame are a batch):

    template crop (128) --backbone--> f_t (96ch, 8x8) --neck--> masked kernel K, fg prototype
    search crop (256)   --backbone--> f4, f8, f16      --neck--> s16
    response  R  = depthwise-xcorr(s16, K)                       (128ch, 16x16)
    head(R, prior16)  -> score map (where is the object centre) and, at every cell,
                         the parameters of a tiny dynamic convolution (CondInst style)
    mask features    = FPN(f4, f8, s16 + R) + previous-mask prior   (8ch, 64x64, stride 4)
    mask logits      = dynamic conv (params at the chosen cell) applied to
                       [mask features, coordinates relative to that cell]  -> 64x64, upsampled to 256

The decoupling is the paper's idea: *what* the object is (the kernels, predicted from the
template/search correlation at the target's location) is separate from *where its boundaries are*
(a high-resolution mask-feature map shared by every object). Two additions over the paper, both
cheap: the first-frame mask weights the template features (so two objects in one box differ), and
the previous frame's mask, cropped like the search image, is a prior input to the head and the
mask features (mask propagation, as in MaskTrack/RGMP), which stabilises the mask between frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vosctl.model.backbone import STAGE_CHANNELS, STRIDE2_CHANNELS, MobileNetV2Features

# Mask logit given to the cells outside a ``mask_region`` (sigmoid ~1e-13: background, and no
# weight in the appearance check's mask-weighted pooling). The tracker also gives it to the frame
# outside a pasted crop: the one "certainly background" logit.
OUTSIDE_REGION_LOGIT = -30.0

# The colour input's histogram (NetworkConfig.colour_input): 16 levels per channel, the bins of the
# tracker's written-mask colour cue (vosctl.colour), and the log ratio clipped at +-3 like it, then
# divided by 3 so the network sees [-1, 1].
COLOUR_BITS = 4
COLOUR_CLIP = 3.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters; stored in every checkpoint."""

    template_size: int = 128
    search_size: int = 256
    embed_channels: int = 128
    fpn_channels: int = 64
    mask_channels: int = 8  # channels of the mask-feature map the dynamic kernels act on
    dynamic_channels: int = 8  # hidden width of the dynamic 1x1 convolutions
    dynamic_layers: int = 3
    background_weight: float = 0.2  # template weight outside the first-frame mask
    # Exponent on each template cell's mask coverage when averaging the foreground prototype. The
    # template grid is coarse (8x8 cells), so a thin object (legs, a neck) covers few cells fully;
    # with plain coverage weights (1) its prototype is mostly background, and the prototype term
    # then fires on any similar background (a flamingo's mask spilling onto the rocks beside it).
    prototype_power: float = 1.0
    # A learned correction of the prototype from the template's stride-8 features, averaged over
    # the mask at 16x16 cells (4x finer coverage than the stride-16 grid). Zero-initialised, so a
    # model fine-tuned with it starts exactly where its parent was. Not yet in a shipped model.
    fine_prototype: bool = False
    use_prior: bool = True
    # 4: mask features at stride 4 of the search crop (the first model); 2: refined at stride 2
    # with the backbone's ``features[1]`` (finer boundaries for large, downscaled objects).
    mask_stride: int = 4
    presence_head: bool = False  # a learned "is the object in this crop" output (extras["presence"])
    # Colour evidence as an input of the mask features: the template crop's colour histograms (its
    # object vs the rest of the crop) looked up over the search crop, at stride 4, through a small
    # zero-initialised branch added to the FPN's stride-4 output. A fine-tune from a model without
    # it starts exactly where its parent was, and training learns where colour is worth trusting
    # (the tracker's fixed-weight cue on the written masks cannot). Not in a shipped model: round 28's
    # fine-tune gained +0.001 J&F over its control on the training sequences (model card).
    colour_input: bool = False
    # The search crop the tracker resamples the search window to, where it is not ``search_size``:
    # the same window (``window_factor``), finer or coarser. A property of the shipped model, chosen
    # on training sequences (model card); training always uses ``search_size``. None: search_size.
    inference_search_size: int | None = None

    @property
    def feature_stride(self) -> int:
        return 16

    @property
    def score_size(self) -> int:
        return self.search_size // self.feature_stride

    @property
    def template_feature_size(self) -> int:
        return self.template_size // self.feature_stride

    @property
    def mask_size(self) -> int:
        return self.search_size // self.mask_stride

    @property
    def window_factor(self) -> float:
        """Search window side / template window side, as trained (SiamMask's 2 for 256 / 128)."""
        return self.search_size / self.template_size

    @property
    def tracking_search_size(self) -> int:
        """The search crop the tracker uses by default."""
        return self.inference_search_size or self.search_size

    @property
    def coordinate_scale(self) -> float:
        """Divisor of the dynamic kernels' relative coordinates (mask-grid cells).

        The mask grid of a search crop twice the template's size: the geometry every model so far
        was trained at, so a smaller or larger search crop (or the full-frame ablation) keeps the
        coordinate scale per pixel of object that the kernels learned.
        """
        return 2 * self.template_size / self.mask_stride

    def dynamic_param_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of each dynamic 1x1 layer; input = mask features + 2 relative coordinates."""
        widths = [self.mask_channels + 2] + [self.dynamic_channels] * (self.dynamic_layers - 1) + [1]
        return [(widths[i + 1], widths[i]) for i in range(self.dynamic_layers)]

    @property
    def num_dynamic_params(self) -> int:
        return sum(o * i + o for o, i in self.dynamic_param_shapes())

    @property
    def concatenated_inputs(self) -> dict[str, tuple[int, ...]]:
        """Input channel groups of the layers that take a concatenation whose width depends on the
        config (the mask tower's first convolution: FPN features, then the prior), by weight key.
        Narrowing such a layer from a wider parent takes each group's leading channels.
        """
        return {"mask_tower.0.0.weight": (self.fpn_channels, 1 if self.use_prior else 0)}

    def to_dict(self) -> dict:
        return asdict(self)


def conv_bn_relu(inp: int, out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
    )


@dataclass
class TemplateEmbedding:
    """What the network keeps of each object's template: computed once, reused every frame."""

    kernel: torch.Tensor  # (N, C, k, k) mask-weighted template features, the xcorr kernel
    prototype: torch.Tensor  # (N, C) mean feature inside the first-frame mask
    # (N, 2^(3 x COLOUR_BITS)) colour evidence per histogram bin, in [-1, 1]; networks with
    # ``colour_input`` only (None otherwise)
    colour: torch.Tensor | None = None

    def select(self, index: torch.Tensor | list[int]) -> TemplateEmbedding:
        colour = None if self.colour is None else self.colour[index]
        return TemplateEmbedding(self.kernel[index], self.prototype[index], colour)


def template_fields(config: NetworkConfig) -> list[str]:
    """The TemplateEmbedding fields a network of ``config`` fills, in order (traced graphs' inputs)."""
    return ["kernel", "prototype"] + (["colour"] if config.colour_input else [])


def colour_bin_index(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB 0..255 -> (N, H x W) long: each pixel's colour-histogram bin."""
    levels = 1 << COLOUR_BITS
    rgb = (images.float() * (levels / 256.0)).floor().clamp(0, levels - 1).long()
    return (rgb[:, 0] * (levels * levels) + rgb[:, 1] * levels + rgb[:, 2]).flatten(1)


def colour_evidence_table(template: torch.Tensor, template_mask: torch.Tensor) -> torch.Tensor:
    """(N, bins) clipped log(p_object / p_rest) of each colour over the template crop, / COLOUR_CLIP.

    The rest of the crop is the object's context at the template's scale (``vosctl.colour``, the
    tracker's cue, uses a box twice the object's instead); one pseudo-count per bin on both sides, as there.
    """
    with torch.autocast(template.device.type, enabled=False):
        index = colour_bin_index(template)
        inside = template_mask.float().flatten(1)  # (N, 1, T, T), the template's own size
        bins = 1 << (3 * COLOUR_BITS)
        fg = inside.new_ones(inside.shape[0], bins).scatter_add(1, index, inside)
        bg = inside.new_ones(inside.shape[0], bins).scatter_add(1, index, 1.0 - inside)
        ratio = torch.log(fg / fg.sum(1, keepdim=True)) - torch.log(bg / bg.sum(1, keepdim=True))
        return ratio.clamp(-COLOUR_CLIP, COLOUR_CLIP) / COLOUR_CLIP


@dataclass
class SearchOutput:
    score: torch.Tensor  # (N, 1, S, S) logits: object centre on the stride-16 grid
    # (N, 1, search_size, search_size); with forward_search(mask_on_grid=True) the network's own mask
    # grid instead: (N, 1, search_size / mask_stride, search_size / mask_stride).
    mask_logits: torch.Tensor
    location: torch.Tensor  # (N, 2) long (row, col) of the cell whose dynamic kernel made the mask
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class SiamDMN(nn.Module):
    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        c4, c8, c16 = STAGE_CHANNELS
        emb, fpn = config.embed_channels, config.fpn_channels
        self.backbone = MobileNetV2Features()
        self.neck = nn.Sequential(nn.Conv2d(c16, emb, 1, bias=False), nn.BatchNorm2d(emb), nn.ReLU(inplace=True))
        prior_ch = 1 if config.use_prior else 0

        # Score / kernel-controller head on the correlation response (+ the prior at stride 16).
        self.head = nn.Sequential(conv_bn_relu(emb + emb + prior_ch, emb), conv_bn_relu(emb, emb))
        self.score_out = nn.Conv2d(emb, 1, 1)
        self.controller = nn.Conv2d(emb, config.num_dynamic_params, 1)

        # Mask-feature branch (FPN over the search crop, shared by every object's kernels).
        self.lateral16 = nn.Conv2d(emb + emb, fpn, 1)
        self.lateral8 = nn.Conv2d(c8, fpn, 1)
        self.lateral4 = nn.Conv2d(c4, fpn, 1)
        self.smooth8 = conv_bn_relu(fpn, fpn)
        self.mask_tower = nn.Sequential(
            conv_bn_relu(fpn + prior_ch, fpn), conv_bn_relu(fpn, fpn), nn.Conv2d(fpn, config.mask_channels, 1)
        )
        if config.mask_stride not in (2, 4):
            raise ValueError(f"mask_stride must be 2 or 4, not {config.mask_stride}")
        if config.mask_stride == 2:
            # Stride-2 refinement: a residual on the upsampled stride-4 features, from features[1].
            mc = config.mask_channels
            self.fine = nn.Sequential(conv_bn_relu(STRIDE2_CHANNELS + mc, 16), nn.Conv2d(16, mc, 1))
        if config.fine_prototype:
            self.fine_prototype = nn.Linear(c8, emb)
        if config.colour_input:
            # Zero last layer: adds exactly nothing until trained (see NetworkConfig.colour_input).
            self.colour_in = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, fpn, 1))
        if config.presence_head:
            # Presence from the head's features at the chosen cell and at its strongest cell
            # anywhere, plus the score and appearance similarity there (SAM 2's object score).
            self.presence = nn.Sequential(nn.Linear(2 * emb + 2, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self._init_heads()

    def _init_heads(self) -> None:
        # Start the score near the prior of a rare positive (focal-loss practice) and the dynamic
        # kernels small, so the first mask logits are close to zero instead of saturated.
        nn.init.constant_(self.score_out.bias, -4.0)
        nn.init.normal_(self.score_out.weight, std=0.01)
        nn.init.normal_(self.controller.weight, std=0.01)
        nn.init.zeros_(self.controller.bias)
        if self.config.fine_prototype:
            nn.init.zeros_(self.fine_prototype.weight)
            nn.init.zeros_(self.fine_prototype.bias)
        if self.config.colour_input:
            nn.init.zeros_(self.colour_in[-1].weight)
            nn.init.zeros_(self.colour_in[-1].bias)
        if self.config.mask_stride == 2:
            # Zero residual: a model fine-tuned from a stride-4 one starts with its exact features, upsampled.
            nn.init.zeros_(self.fine[-1].weight)
            nn.init.zeros_(self.fine[-1].bias)

    # ------------------------------------------------------------------ helpers
    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8-range float images (N, 3, H, W) in RGB -> ImageNet-normalised input."""
        return (images - self.pixel_mean) / self.pixel_std

    @staticmethod
    def _depthwise_xcorr(search: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Per-object, per-channel correlation; output keeps the search map's size."""
        n, c, h, w = search.shape
        k = kernel.shape[-1]
        pad_lo, pad_hi = (k - 1) // 2, k // 2
        padded = F.pad(search, (pad_lo, pad_hi, pad_lo, pad_hi))
        out = F.conv2d(padded.reshape(1, n * c, h + k - 1, w + k - 1), kernel.reshape(n * c, 1, k, k), groups=n * c)
        return out.reshape(n, c, h, w) / float(k * k)

    # ------------------------------------------------------------------ template
    def embed_template(self, template: torch.Tensor, template_mask: torch.Tensor) -> TemplateEmbedding:
        """template: (N, 3, T, T) RGB 0..255; template_mask: (N, 1, T, T) in [0, 1]."""
        cfg = self.config
        _, f8, f16 = self.backbone(self.normalise(template))
        feat = self.neck(f16)
        mask = F.adaptive_avg_pool2d(template_mask, feat.shape[-2:])
        weight = mask + cfg.background_weight * (1.0 - mask)
        prototype = self._masked_mean(feat, mask)
        if cfg.fine_prototype:
            fine_mask = F.adaptive_avg_pool2d(template_mask, f8.shape[-2:])
            prototype = prototype + self.fine_prototype(self._masked_mean(f8, fine_mask))
        colour = colour_evidence_table(template, template_mask) if cfg.colour_input else None
        return TemplateEmbedding(kernel=feat * weight, prototype=prototype, colour=colour)

    def _masked_mean(self, features: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """(N, C) mean of ``features`` over the cells, each weighted by its mask coverage to ``prototype_power``."""
        power = self.config.prototype_power
        cover = coverage if power == 1.0 else coverage**power
        return (features * cover).sum((2, 3)) / cover.sum((2, 3)).clamp_min(1e-3)

    # ------------------------------------------------------------------ search
    def forward_search(
        self,
        search: torch.Tensor,
        template: TemplateEmbedding,
        prior: torch.Tensor | None = None,
        location: torch.Tensor | None = None,
        score_bias: torch.Tensor | None = None,
        mask_region: tuple[int, int, int, int] | None = None,
        mask_on_grid: bool = False,
    ) -> SearchOutput:
        """Run the search branch for N objects at once.

        search: (N, 3, H, W) RGB 0..255 (H, W multiples of 16; the crop is S x S).
        prior: (N, 1, H, W) previous mask in [0, 1] or None.
        location: (N, 2) cells to take the dynamic kernels from (training: the ground truth; -1
        rows: the best cell); when None the best-scoring cell is used, after adding ``score_bias`` (N, 1, s, s) to the
        logits (the tracker's cosine window / motion penalty).
        mask_region: (top, bottom, left, right) in stride-4 cells: run the FPN's stride-8 and
        stride-4 layers and the mask path (the costliest part after the backbone) over that part of
        the crop only (:meth:`_fpn_region`); every other cell of the mask is background
        (``OUTSIDE_REGION_LOGIT``). None: the whole crop. The
        tracker passes one when every object's previous mask, with a margin, lies inside it
        (:func:`vosctl.geometry.smallest_mask_region`); scores, kernels and presence are computed as always.
        mask_on_grid: return the mask logits on the mask grid (stride ``mask_stride`` of the crop)
        instead of bilinearly upsampled to the crop. Training's loss uses the crop-sized logits; the
        tracker takes the grid and resamples it once, straight to the frame.
        """
        cfg = self.config
        n = search.shape[0]
        f2, f4, f8, f16 = self.backbone.forward_taps(self.normalise(search))
        s16 = self.neck(f16)
        response = self._depthwise_xcorr(s16, template.kernel)
        proto_sim = s16 * template.prototype[:, :, None, None]  # channel-wise agreement with the object
        corr = torch.cat([response, proto_sim], 1)
        if cfg.use_prior:
            if prior is None:
                prior = search.new_zeros(n, 1, *search.shape[-2:])
            prior16 = F.adaptive_avg_pool2d(prior, s16.shape[-2:])
            prior4 = F.adaptive_avg_pool2d(prior, f4.shape[-2:])
            hidden = self.head(torch.cat([corr, prior16], 1))
        else:
            hidden = self.head(corr)
        score = self.score_out(hidden)
        params = self.controller(hidden)

        # FPN: stride 16 -> 8 -> 4, over the whole crop or, with a mask region, only where it needs.
        # The whole-crop path keeps its own lines: the ONNX export traces it with symbolic canvas
        # sides, which the region's index arithmetic would turn into shape guards.
        p16 = self.lateral16(torch.cat([s16, response], 1))
        colour4 = self._colour_features(search, template, f4.shape[-2:]) if cfg.colour_input else None
        if mask_region is None:
            p8 = self.smooth8(self.lateral8(f8) + F.interpolate(p16, size=f8.shape[-2:], mode="nearest"))
            # channels_last for the upsampling: a fused trace hands p8 over as NCHW, where bilinear
            # upsampling of 64 channels takes ~4x longer on the CPU (0.57 vs 0.14 ms); a no-op elsewhere.
            p8 = p8.contiguous(memory_format=torch.channels_last)
            p4 = self.lateral4(f4) + F.interpolate(p8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
            if colour4 is not None:
                p4 = p4 + colour4
            if cfg.use_prior:
                p4 = torch.cat([p4, prior4], 1)
        else:
            p4, f2 = self._fpn_region(p16, f8, f4, f2, prior4 if cfg.use_prior else None, mask_region, colour4)
        grid_h, grid_w = f4.shape[-2:]
        mask_features = self.mask_tower(p4)
        if cfg.mask_stride == 2:
            up = F.interpolate(mask_features, size=f2.shape[-2:], mode="bilinear", align_corners=False)
            mask_features = up + self.fine(torch.cat([f2, up.to(f2.dtype)], 1))

        if location is None or bool((location < 0).any()):
            # The best-scoring cell (after the tracker's motion penalty); in training, rows of -1
            # ask for it too (absent targets: the network's own most object-like cell).
            ranked = (score if score_bias is None else score + score_bias).detach()
            flat = ranked.flatten(1).argmax(1)
            best = torch.stack([flat // ranked.shape[-1], flat % ranked.shape[-1]], 1)
            location = best if location is None else torch.where(location < 0, best, location)
        batch = torch.arange(n, device=params.device)
        kernel_params = params[batch, :, location[:, 0], location[:, 1]]
        if mask_region is None:
            mask_small = self.dynamic_mask(mask_features, kernel_params, location)
        else:
            per_cell = 4 // cfg.mask_stride  # mask cells per stride-4 cell
            top, bottom, left, right = (v * per_cell for v in mask_region)
            mask_small = self.dynamic_mask(mask_features, kernel_params, location, origin=(top, left))
            pad = (left, grid_w * per_cell - right, top, grid_h * per_cell - bottom)
            mask_small = F.pad(mask_small, pad, value=OUTSIDE_REGION_LOGIT)
        if mask_on_grid:
            mask_logits = mask_small
        else:
            mask_logits = F.interpolate(mask_small, size=search.shape[-2:], mode="bilinear", align_corners=False)
        # Appearance check: does what the mask covers look like the template's object?
        weight = F.adaptive_avg_pool2d(torch.sigmoid(mask_small.float()), s16.shape[-2:]).to(s16.dtype)
        pooled = (s16 * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-3)
        similarity = F.cosine_similarity(pooled.float(), template.prototype.float(), dim=1)
        extras = {"similarity": similarity}
        if cfg.presence_head:
            at_cell = hidden[batch, :, location[:, 0], location[:, 1]].float()
            strongest = hidden.float().amax((2, 3))
            cell_score = score[batch, 0, location[:, 0], location[:, 1]].float()
            features = torch.cat([at_cell, strongest, cell_score[:, None], similarity[:, None]], 1)
            extras["presence"] = self.presence(features.to(hidden.dtype))[:, 0]
        return SearchOutput(score=score, mask_logits=mask_logits, location=location, extras=extras)

    def _colour_features(
        self, search: torch.Tensor, template: TemplateEmbedding, size: tuple[int, int]
    ) -> torch.Tensor:
        """The colour branch's (N, fpn, h4, w4) term: the template's colour evidence over the search crop.

        Looked up at every second pixel (a quarter of the lookups; the average over a stride-4
        cell's four samples is what the branch sees) and pooled to the stride-4 grid.
        """
        if template.colour is None:
            raise ValueError("this network takes colour evidence: embed its templates with embed_template")
        with torch.autocast(search.device.type, enabled=False):
            sampled = search[:, :, ::2, ::2]
            evidence = template.colour.float().gather(1, colour_bin_index(sampled))
            evidence = evidence.reshape(search.shape[0], 1, sampled.shape[2], sampled.shape[3])
            evidence = F.adaptive_avg_pool2d(evidence, size)
        return self.colour_in(evidence.to(search.dtype))

    def _fpn_region(
        self,
        p16: torch.Tensor,
        f8: torch.Tensor,
        f4: torch.Tensor,
        f2: torch.Tensor,
        prior4: torch.Tensor | None,
        mask_region: tuple[int, int, int, int],
        colour4: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The FPN's stride-4 output (with the prior) and the stride-2 features over ``mask_region`` only.

        The stride-8 layers run on the cells under the region plus a 2-cell halo: the 2x bilinear
        upsampling reads one cell beyond them, and smooth8's 3x3 is exact one cell inside its
        input's edge. So every value the region uses equals the whole crop's (the same masks as
        cropping afterwards), at ~0.4x the stride-8 cells for a region of half the side.
        """
        grid_h, grid_w = f4.shape[-2:]
        top, bottom, left, right = mask_region
        if not (0 <= top < bottom <= grid_h and 0 <= left < right <= grid_w):
            raise ValueError(f"mask_region {mask_region} is outside the {grid_h}x{grid_w} stride-4 grid")
        h8, w8 = f8.shape[-2:]
        top8, bottom8 = max(0, top // 2 - 2), min(h8, (bottom + 1) // 2 + 2)
        left8, right8 = max(0, left // 2 - 2), min(w8, (right + 1) // 2 + 2)
        p16_up = F.interpolate(p16, size=(h8, w8), mode="nearest")[:, :, top8:bottom8, left8:right8]
        p8 = self.smooth8(self.lateral8(f8[:, :, top8:bottom8, left8:right8]) + p16_up)
        p8 = p8.contiguous(memory_format=torch.channels_last)  # as in forward_search
        size = (2 * (bottom8 - top8), 2 * (right8 - left8))  # f4 is exactly 2x f8 (crop sides are multiples of 16)
        up8 = F.interpolate(p8, size=size, mode="bilinear", align_corners=False)
        up8 = up8[:, :, top - 2 * top8 : bottom - 2 * top8, left - 2 * left8 : right - 2 * left8]
        p4 = self.lateral4(f4[:, :, top:bottom, left:right]) + up8
        if colour4 is not None:  # made over the whole grid, so its 3x3 is exact at the region's edge
            p4 = p4 + colour4[:, :, top:bottom, left:right]
        if prior4 is not None:
            p4 = torch.cat([p4, prior4[:, :, top:bottom, left:right]], 1)
        return p4, f2[:, :, 2 * top : 2 * bottom, 2 * left : 2 * right]

    def dynamic_mask(
        self,
        mask_features: torch.Tensor,
        params: torch.Tensor,
        location: torch.Tensor,
        origin: tuple[int, int] = (0, 0),
    ) -> torch.Tensor:
        """Apply each object's predicted 1x1-conv stack to the shared mask features.

        mask_features: (N, C, h, w); params: (N, P); location: (N, 2) cells on the stride-16 grid.
        The relative-coordinate channels tell the kernel where its object is, so the same
        features can produce different masks for different objects. ``origin``: the mask-grid cell
        (row, column) of ``mask_features[..., 0, 0]`` when they cover only part of the crop.
        """
        cfg = self.config
        n, _, h, w = mask_features.shape
        ratio = cfg.feature_stride / cfg.mask_stride
        # The whole dynamic head in fp32 whatever the autocast dtype: bf16 cannot even represent
        # every integer pixel index above 256 (a cell centre of 157.5 would become 158), and under
        # autocast ``baddbmm`` would round the coordinates back to bf16. The head is tiny.
        with torch.autocast(mask_features.device.type, enabled=False):
            mask_features, params = mask_features.float(), params.float()
            centre_y = (location[:, 0].float() + 0.5) * ratio - 0.5 - origin[0]
            centre_x = (location[:, 1].float() + 0.5) * ratio - 0.5 - origin[1]
            ys = torch.arange(h, device=mask_features.device, dtype=torch.float32)
            xs = torch.arange(w, device=mask_features.device, dtype=torch.float32)
            # Normalised by a constant tied to the template's size, not to this input's: larger
            # inputs (the full-frame ablation) and other search crops keep the coordinate scale the
            # kernels were trained with, at either stride.
            rel_y = (ys[None, :, None] - centre_y[:, None, None]) / cfg.coordinate_scale
            rel_x = (xs[None, None, :] - centre_x[:, None, None]) / cfg.coordinate_scale
            coords = torch.stack([rel_y.expand(n, h, w), rel_x.expand(n, h, w)], 1)
            x = torch.cat([mask_features, coords], 1).flatten(2)  # (N, C+2, h*w)

            offset = 0
            shapes = cfg.dynamic_param_shapes()
            for index, (out_ch, in_ch) in enumerate(shapes):
                weight = params[:, offset : offset + out_ch * in_ch].reshape(n, out_ch, in_ch)
                offset += out_ch * in_ch
                bias = params[:, offset : offset + out_ch].reshape(n, out_ch, 1)
                offset += out_ch
                x = torch.baddbmm(bias, weight, x)
                if index < len(shapes) - 1:
                    x = F.relu(x)
            return x.reshape(n, 1, h, w)

    def forward(
        self,
        template: torch.Tensor,
        template_mask: torch.Tensor,
        search: torch.Tensor,
        prior: torch.Tensor | None = None,
        location: torch.Tensor | None = None,
    ) -> SearchOutput:
        """Training entry: one template/search pair per batch element."""
        return self.forward_search(search, self.embed_template(template, template_mask), prior, location)


def fuse_for_inference(model: SiamDMN) -> SiamDMN:
    """A copy of ``model`` with every Conv2d+BatchNorm2d pair folded into one convolution.

    Inference-only (BN statistics are frozen): saves one pass over every feature map per layer.
    The original model is left untouched, so a training run can evaluate itself safely.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                module._modules[name_a] = fuse_conv_bn_eval(a, b)
                module._modules[name_b] = nn.Identity()
    return fused
