"""Image operators shared by data and losses: the gradient of Eq. 2 and the Gaussian blur of T_recon."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from derain.errors import DerainError


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical forward differences (∇ in Eq. 2) of a ...×H×W tensor.

    Returns dx of shape ...×H×(W-1) and dy of shape ...×(H-1)×W.
    """
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gaussian_kernel_size(sigma: float) -> int:
    """Odd size covering ±3σ: 2·ceil(3σ) + 1."""
    return 2 * math.ceil(3 * sigma) + 1


def gaussian_kernel1d(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    radius = gaussian_kernel_size(sigma) // 2
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a C×H×W or B×C×H×W tensor, reflect-padded so the size is kept.

    σ ≤ 0 returns the input unchanged. Images narrower than the kernel radius use replicate padding.
    """
    if sigma <= 0:
        return x
    batched = x.dim() == 4
    x4 = x if batched else x.unsqueeze(0)
    channels = x4.shape[1]
    k = gaussian_kernel1d(sigma, dtype=x4.dtype, device=x4.device)
    radius = k.numel() // 2
    mode = "reflect" if radius < min(x4.shape[-2:]) else "replicate"
    x4 = F.pad(x4, (radius, radius, radius, radius), mode=mode)
    x4 = F.conv2d(x4, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x4 = F.conv2d(x4, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x4 if batched else x4.squeeze(0)


class RandomBlur:
    """T_recon's degradation: a Gaussian blur with σ drawn uniformly from `sigma_range`.

    `blur(x, rng)` returns (blurred, sigma); `rng` is a numpy Generator, so datasets stay deterministic.
    """

    def __init__(self, sigma_range: tuple[float, float] = (0.5, 3.0)):
        low, high = (float(s) for s in sigma_range)
        if not 0 <= low <= high:
            raise DerainError(f"sigma_range must satisfy 0 <= low <= high, got {sigma_range}")
        self.sigma_range = (low, high)

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        sigma = float(rng.uniform(*self.sigma_range))
        return gaussian_blur(x, sigma), sigma

    def __repr__(self) -> str:
        return f"RandomBlur(sigma_range={self.sigma_range})"
