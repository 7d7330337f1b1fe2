"""Losses: a focal loss on the centre score map, BCE + Dice on the mask, BCE on its boundary band."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def centre_heatmap(
    boxes_centre: torch.Tensor, present: torch.Tensor, size: int, stride: int, sigma: float = 0.8
) -> torch.Tensor:
    """Gaussian targets on the score grid; all zeros where the target is absent.

    boxes_centre: (N, 2) object centres (x, y) in search-crop pixels.
    """
    cells = (torch.arange(size, dtype=torch.float32, device=boxes_centre.device) + 0.5) * stride
    dx = (cells[None, None, :] - boxes_centre[:, 0, None, None]) / stride
    dy = (cells[None, :, None] - boxes_centre[:, 1, None, None]) / stride
    heat = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    return (heat * present[:, None, None].float()).unsqueeze(1)


def focal_heatmap_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of positive samples."""
    prob = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target.ge(0.99).float()
    pos_loss = -torch.log(prob) * (1 - prob) ** alpha * positive
    neg_loss = -torch.log(1 - prob) * prob**alpha * (1 - target) ** beta * (1 - positive)
    num_pos = positive.sum().clamp_min(1.0)
    return (pos_loss.sum() + neg_loss.sum()) / num_pos


def mask_loss(
    logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor, boundary_radius: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel BCE over every sample (absent targets must give empty masks), Dice where present, and
    the BCE averaged over the boundary band (``boundary_bce``), from one per-pixel BCE map."""
    logits = logits.float()
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = per_pixel.mean()
    prob = torch.sigmoid(logits).flatten(1)
    tgt = target.flatten(1)
    inter = (prob * tgt).sum(1)
    dice = 1 - (2 * inter + 1) / (prob.sum(1) + tgt.sum(1) + 1)
    weight = present.float()
    dice_loss = (dice * weight).sum() / weight.sum().clamp_min(1.0)
    return bce, dice_loss, _band_mean(per_pixel, target, boundary_radius)


def boundary_band(target: torch.Tensor, radius: int) -> torch.Tensor:
    """Cells within ``radius`` cells (Chebyshev) of the target's edge, on both sides of it.

    A cell is in the band when its ``(2 radius + 1)^2`` neighbourhood holds both object and
    background; the band of an empty (or full) target is empty.
    """
    binary = (target > 0.5).float()
    size = 2 * radius + 1
    grown = F.max_pool2d(binary, size, stride=1, padding=radius)
    shrunk = -F.max_pool2d(-binary, size, stride=1, padding=radius)
    return (grown - shrunk) > 0.5


def boundary_bce(logits: torch.Tensor, target: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Pixel BCE averaged over the boundary band only (0 when no sample has a boundary).

    Why: the whole-crop BCE and Dice are dominated by the interior and the background, while the
    DAVIS boundary measure F only counts edges (within ~8 frame pixels, one or two mask cells at
    the tracker's usual scale). Averaging over the band gives the edge cells a fixed share of the
    loss whatever the object's size.
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return _band_mean(per_pixel, target, radius)


def _band_mean(per_pixel: torch.Tensor, target: torch.Tensor, radius: int) -> torch.Tensor:
    band = boundary_band(target, radius).float()
    return (per_pixel * band).sum() / band.sum().clamp_min(1.0)


def distillation_loss(
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    student_score: torch.Tensor,
    teacher_score: torch.Tensor,
    student_presence: torch.Tensor | None = None,
    teacher_presence: torch.Tensor | None = None,
) -> torch.Tensor:
    """Match a frozen teacher's outputs on the same batch: BCE of the student's logits against the
    teacher's probabilities (mask pixels, score cells and, where both have one, presence).

    Its gradient is sigmoid(student) - sigmoid(teacher), zero where they agree; soft targets carry
    what the teacher knows beyond the binary labels (where it is unsure, what a distractor scores).
    """
    loss = F.binary_cross_entropy_with_logits(student_mask.float(), torch.sigmoid(teacher_mask.float()))
    loss = loss + F.binary_cross_entropy_with_logits(student_score.float(), torch.sigmoid(teacher_score.float()))
    if student_presence is not None and teacher_presence is not None:
        target = torch.sigmoid(teacher_presence.float())
        loss = loss + F.binary_cross_entropy_with_logits(student_presence.float(), target)
    return loss
