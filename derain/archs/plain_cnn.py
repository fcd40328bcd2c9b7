"""The floor every AGLF-ViT variant must beat: a plain residual CNN of 3×3 convs (no attention, no SPP)."""
from __future__ import annotations

import torch
import torch.nn as nn

from derain.archs.decoders import conv_stack


class PlainCNN(nn.Module):
    """img + conv(...conv(img)): `depth` 3×3 convs of `width` channels, LeakyReLU between them."""

    def __init__(self, width: int = 32, depth: int = 8, in_chans: int = 3):
        super().__init__()
        self.body = conv_stack([in_chans] + [width] * (depth - 1))
        self.out = nn.Conv2d(width, in_chans, 3, padding=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img + self.out(self.body(img))
