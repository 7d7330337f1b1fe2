"""Where and how the network runs: device choice, numeric precision, and the batched forward call.

The tracker never touches autocast, dtypes or device transfers itself; it hands uint8 crops to an
:class:`Engine` and gets numpy arrays back. That keeps the precision choice (a pure function,
:func:`choose_precision`) testable on its own and lets another backend (ONNX Runtime, a
device-resident CUDA path) replace this one behind the same two calls, ``embed`` and ``search``.

Owner: throughput issue (#9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vosctl.errors import InputError
from vosctl.model.network import SiamDMN, TemplateEmbedding, fuse_for_inference


def pick_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu' / 'cuda' as asked (a clear error if impossible)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device '{device}' (use auto, cpu or cuda)")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(requested: str, device: torch.device) -> str:
    """The precision the forward pass runs in: 'bf16' or 'fp32'."""
    if requested not in ("auto", "bf16", "fp32"):
        raise InputError(f"unknown precision '{requested}' (use auto, bf16 or fp32)")
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return requested


@dataclass
class SearchResult:
    """Per-object outputs of one batched search forward, on the host, in crop coordinates."""

    mask_prob: np.ndarray  # (N, H, W) float32 mask probabilities over the search canvas
    peak: np.ndarray  # (N,) float32 sigmoid of the centre score at the chosen cell
    similarity: np.ndarray  # (N,) float32 cosine of the masked search features to the template
    presence: np.ndarray  # (N,) float32 probability that the object is in the canvas (peak if no head)


class Engine:
    """Runs a (BN-fused) SiamDMN on one device in one precision."""

    def __init__(self, model: SiamDMN, device: str = "auto", precision: str = "auto") -> None:
        self.torch_device = pick_device(device)
        self.precision = choose_precision(precision, self.torch_device)
        # BN folded into the convolutions, on a copy: the caller's model (maybe training) is untouched.
        self.model = fuse_for_inference(model).to(self.torch_device).to(memory_format=torch.channels_last)
        self.config = model.config

    @property
    def device(self) -> str:
        return str(self.torch_device)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.torch_device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _images_to_tensor(self, images: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(images).to(self.torch_device, non_blocking=True)
        return tensor.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)

    def embed(self, crops: np.ndarray, masks: np.ndarray) -> TemplateEmbedding:
        """crops: (N, T, T, 3) uint8; masks: (N, T, T) float32 0..1 -> the objects' template embedding."""
        with torch.inference_mode(), self._autocast():
            return self.model.embed_template(
                self._images_to_tensor(crops), torch.from_numpy(masks).to(self.torch_device)[:, None]
            )

    def search(
        self,
        search: np.ndarray,
        templates: TemplateEmbedding,
        prior: np.ndarray,
        score_bias: np.ndarray | None,
    ) -> SearchResult:
        """search: (N, H, W, 3) uint8; prior: (N, H, W) uint8 0/255; score_bias: (N, 1, h, w) or None."""
        n = search.shape[0]
        bias = None if score_bias is None else torch.from_numpy(score_bias).to(self.torch_device)
        with torch.inference_mode(), self._autocast():
            out = self.model.forward_search(
                self._images_to_tensor(search),
                templates,
                torch.from_numpy(prior).to(self.torch_device)[:, None].gt(127).float(),
                score_bias=bias,
            )
            rows, cols = out.location[:, 0], out.location[:, 1]
            peak = torch.sigmoid(out.score[torch.arange(n), 0, rows, cols].float())
            mask_prob = torch.sigmoid(out.mask_logits.float())[:, 0]
            similarity = out.extras["similarity"].float()
            presence = out.extras.get("presence")
            presence = peak if presence is None else torch.sigmoid(presence.float())
        return SearchResult(
            mask_prob=mask_prob.cpu().numpy(),
            peak=peak.cpu().numpy(),
            similarity=similarity.cpu().numpy(),
            presence=presence.cpu().numpy(),
        )
