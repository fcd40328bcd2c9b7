"""Decoders (paper Fig. 3). D_recog: SPP -> average pool -> FC (one score per image).
D_recon and D_dr share one design: SPP -> conv, giving an image residual."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from derain.archs.aglf_vit import box_mean


class SPP(nn.Module):
    """Spatial pyramid pooling: the features averaged over k×k neighbourhoods for several k,
    concatenated with the input and fused by a 1×1 conv. Stride 1, so any size works and
    the receptive field stays bounded."""

    def __init__(self, dim: int, kernels: tuple[int, ...]):
        super().__init__()
        self.kernels = kernels
        self.fuse = nn.Conv2d(dim * (1 + len(kernels)), dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x] + [box_mean(x, k) for k in self.kernels]
        return F.leaky_relu(self.fuse(torch.cat(pyramid, 1)), 0.2)


class RecogDecoder(nn.Module):
    """D_recog: a rainy (0) / rain-free (1) score per image."""

    def __init__(self, dim: int, kernels: tuple[int, ...]):
        super().__init__()
        self.spp = SPP(dim, kernels)
        self.fc = nn.Linear(dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.spp(feats).mean((2, 3))).squeeze(1)


class ImageDecoder(nn.Module):
    """D_recon / D_dr: predicts the clean image as input + residual, at the input's size."""

    def __init__(self, dim: int, kernels: tuple[int, ...], out_chans: int = 3, patch_size: int = 1):
        super().__init__()
        self.patch_size = patch_size
        self.spp = SPP(dim, kernels)
        self.conv = nn.Conv2d(dim, out_chans * patch_size**2, 3, padding=1)

    def forward(self, feats: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        residual = self.conv(self.spp(feats))
        if self.patch_size > 1:
            residual = F.pixel_shuffle(residual, self.patch_size)
        H, W = img.shape[-2:]
        return img + residual[..., :H, :W]
