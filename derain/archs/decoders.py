"""Decoders (paper Fig. 3). D_recog: SPP -> average pool -> FC (one score per image).
D_recon and D_dr share one design: SPP -> conv, giving an image residual. With `detail_dim` > 0 the
conv's output is brought to full resolution and fused with a full-resolution detail path, a few 3×3
convs on the image itself, so that 1-4 px streaks are seen at their own scale. With `context_dim` > 0
a dilated context branch widens that path's full-resolution reach from 5 to 18 px each way."""
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


def conv_stack(widths: list[int]) -> nn.Sequential:
    """3×3 convs from widths[0] to widths[-1] channels, LeakyReLU(0.2) after each."""
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


def pixel_shuffle_channels_last(x: torch.Tensor, p: int) -> torch.Tensor:
    """F.pixel_shuffle(x, p), channels-last, in one copy (pixel_shuffle's own result is NCHW, and the
    detail path's convs would copy it again)."""
    B, C, H, W = x.shape
    c = C // (p * p)
    x = x.permute(0, 2, 3, 1).reshape(B, H, W, c, p, p)  # channel c·p² + i·p + j goes to pixel (i, j)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(B, H * p, W * p, c).permute(0, 3, 1, 2)


class DilatedContext(nn.Module):
    """3×3 convs at dilations 1, 2, 4, 8 on the image (15 px each way), then a 1×1 conv to the detail
    path's width. The 1×1 conv starts at zero, so a trained network given this branch is unchanged
    until the branch learns: whether a thin bright line is rain or scene can depend on what lies
    10-15 px around it (other streaks, or the rest of a palm frond)."""

    DILATIONS = (1, 2, 4, 8)

    def __init__(self, in_chans: int, width: int, out_chans: int):
        super().__init__()
        layers, c = [], in_chans
        for d in self.DILATIONS:
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.LeakyReLU(0.2, inplace=True)]
            c = width
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, out_chans, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(img))


class DetailFusion(nn.Module):
    """Full-resolution detail path: 2 convs on the image (plus the dilated context branch, if any),
    concatenated with the upsampled decoder features, 2 more convs and the output conv: 5 px of
    full-resolution reach from the image (18 with the context branch), 3 px added to the coarse path's."""

    def __init__(self, in_chans: int, width: int, out_chans: int, context: int = 0):
        super().__init__()
        self.detail = conv_stack([in_chans, width, width])
        self.context = DilatedContext(in_chans, context, width) if context else None
        self.fuse = conv_stack([2 * width, width, width])
        self.out = nn.Conv2d(width, out_chans, 3, padding=1)

    def forward(self, coarse: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        # channels-last: oneDNN's full-resolution convs run 2x faster than on NCHW (benchmarks/bench_train.py)
        coarse, img = (t.contiguous(memory_format=torch.channels_last) for t in (coarse, img))
        detail = self.detail(img)
        if self.context is not None:
            detail = detail + self.context(img)
        return self.out(self.fuse(torch.cat([coarse, detail], 1)))


class ImageDecoder(nn.Module):
    """D_recon / D_dr: predicts the clean image as input + residual, at the input's size.
    `darken_only` keeps the residual's negative part: rain only adds light (O = B + R, R ≥ 0, and the
    screen blend), so a derained pixel is never brighter than the rainy one. D_dr only; D_recon sharpens.
    `shrink` soft-thresholds the residual (F.softshrink): a change smaller than it is dropped and a larger
    one shortened by it, so the small changes a model makes to a clean photo vanish.
    `shrink_jitter` (training only, set by the stage): each sample's threshold is drawn from
    shrink × [1 − j, 1 + j], so no constant offset of the residual can cancel the threshold.
    `threshold`: one threshold per pixel, B×1×H×W on the 0-1 scale, in place of `shrink`
    (derain.inference.streak_threshold; drawn the same way in training)."""

    def __init__(self, dim: int, kernels: tuple[int, ...], out_chans: int = 3, patch_size: int = 1,
                 detail_dim: int = 0, darken_only: bool = False, shrink: float = 0.0, context_dim: int = 0):
        super().__init__()
        self.patch_size, self.darken_only, self.shrink = patch_size, darken_only, shrink
        self.shrink_jitter = 0.0
        self.spp = SPP(dim, kernels)
        self.conv = nn.Conv2d(dim, (detail_dim or out_chans) * patch_size**2, 3, padding=1)
        self.detail = DetailFusion(out_chans, detail_dim, out_chans, context_dim) if detail_dim else None

    def forward(self, feats: torch.Tensor, img: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
        residual = self.conv(self.spp(feats))
        if self.detail is not None:  # element-wise, so before the shuffle: 1/p² of the pixels
            residual = F.leaky_relu(residual, 0.2, inplace=True)
        if self.patch_size > 1:
            residual = pixel_shuffle_channels_last(residual, self.patch_size)
        H, W = img.shape[-2:]
        residual = residual[..., :H, :W]
        if self.detail is not None:
            residual = self.detail(residual, img)
        threshold = self.shrink if threshold is None else threshold
        if self.training and self.shrink_jitter:  # a threshold (or map) drawn per sample
            jitter = torch.rand(len(residual), 1, 1, 1, device=residual.device, dtype=residual.dtype) * 2 - 1
            threshold = threshold * (1 + self.shrink_jitter * jitter)
        if isinstance(threshold, torch.Tensor):  # softshrink at a threshold per sample or per pixel
            residual = residual - torch.minimum(torch.maximum(residual, -threshold), threshold)
        elif threshold:
            residual = F.softshrink(residual, threshold)
        if self.darken_only:
            residual = residual.clamp(max=0)
        return img + residual
