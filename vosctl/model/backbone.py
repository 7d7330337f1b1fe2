"""MobileNetV2 feature extractor, written here with torchvision's parameter names.

torchvision does not import against the CPU torch build we pin, so the architecture lives in our
code; keeping torchvision's key names (``features.N.conv...``) lets training start from the
ImageNet file ``mobilenet_v2-b0353104.pth`` with a plain ``load_state_dict``. Only the first
14 blocks are built (up to 96 channels at stride 16): the deeper stages cost time and their
stride-32 features are too coarse for a 256 px search crop.
"""

from __future__ import annotations

import torch
from torch import nn

# (expand ratio t, output channels c, repeats n, first stride s) for features.1 ... features.17
_INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Indices into ``features`` whose outputs the network taps: stride 4 (24 ch), 8 (32 ch), 16 (96 ch).
STAGE_ENDS: tuple[int, int, int] = (3, 6, 13)
STAGE_CHANNELS: tuple[int, int, int] = (24, 32, 96)
# The stride-2 tap (``features[1]``, 16 ch) feeds the fine mask features.
STRIDE2_INDEX, STRIDE2_CHANNELS = 1, 16


class ConvBNReLU(nn.Sequential):
    """torchvision's Conv2dNormActivation: keys ``0`` (conv), ``1`` (bn)."""

    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Features(nn.Module):
    """``features[0:14]`` of MobileNetV2 (width 1.0); returns the stride-4, -8 and -16 maps."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
        channels = 32
        for t, c, n, s in _INVERTED_RESIDUAL_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
                if len(blocks) > STAGE_ENDS[-1]:
                    break
            if len(blocks) > STAGE_ENDS[-1]:
                break
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stride-4, -8 and -16 maps."""
        return self.forward_taps(x)[1:]

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stride-2, -4, -8 and -16 maps."""
        taps: list[torch.Tensor] = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index == STRIDE2_INDEX or index in STAGE_ENDS:
                taps.append(x)
        return taps[0], taps[1], taps[2], taps[3]

    def load_imagenet(self, path: str) -> list[str]:
        """Load torchvision's ImageNet state dict (the unused deeper layers are ignored).

        Returns the keys of this module that the file did not provide (should be empty).
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in picked]
        self.load_state_dict(picked, strict=False)
        return missing
