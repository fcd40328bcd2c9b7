"""The encoder shared by E_recog, E_recon and E_stu (paper Fig. 3):
conv stem -> spatial attention -> N AGLF-ViT blocks. Output: B×C×(H/p)×(W/p) features."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from derain.archs.aglf_vit import AGLFViTBlock
from derain.config import ModelConfig


class SpatialAttention(nn.Module):
    """A per-pixel sigmoid mask that highlights rainy content: x · σ(conv(lrelu(conv(x))))."""

    def __init__(self, dim: int):
        super().__init__()
        self.mask = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 2, dim, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask(x)


def pad_to_multiple(img: torch.Tensor, p: int) -> torch.Tensor:
    """Replicate-pad the bottom and right so H and W are multiples of p."""
    H, W = img.shape[-2:]
    ph, pw = (-H) % p, (-W) % p
    return F.pad(img, (0, pw, 0, ph), mode="replicate") if ph or pw else img


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch_size = p = cfg.patch_size
        self.stem = nn.Conv2d(cfg.in_chans * p * p, cfg.dim, 3, padding=1)
        self.spatial_attention = SpatialAttention(cfg.dim)
        self.blocks = nn.ModuleList(
            AGLFViTBlock(cfg.dim, cfg.num_heads, cfg.window_size, cfg.mlp_ratio,
                         shift=(i % 2) * (cfg.window_size // 2),
                         local_reduction=cfg.local_reduction, se_window=cfg.se_window)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.fuse = nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(img, self.patch_size)
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        x = x.contiguous(memory_format=torch.channels_last)  # convs, pools and tokens share one layout
        x = self.spatial_attention(self.stem(x))
        t = x.permute(0, 2, 3, 1).contiguous()  # B×H×W×C tokens (a view already); residual adds keep it
        for block in self.blocks:
            t = block(t)
        return x + self.fuse(self.norm(t).permute(0, 3, 1, 2))
