"""AGLF-ViT block (paper Fig. 4): adaptive fusion of global window attention and a local CNN.

    y = LN(x)
    x = x + α · W-MSA(y) + β · LocalCNN(y)      # α, β learnable scalars
    x = x + MLP(LN(x))

Tokens are kept channels-last, B×H×W×C. Windows follow Swin: shifted by half a window in
odd blocks, with an attention mask; any H×W is padded to the window and cropped back, and
padded keys are masked so they never leak into real tokens.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """B×H×W×C -> B×nW×(w·w)×C."""
    B, H, W, C = x.shape
    x = x.view(B, H // w, w, W // w, w, C).transpose(2, 3)
    return x.reshape(B, (H // w) * (W // w), w * w, C)


def shift_regions(Hp: int, Wp: int, w: int, shift: int) -> torch.Tensor:
    """Hp×Wp labels of Swin's nine regions on the cyclically shifted grid: tokens of different
    regions were not neighbours before the shift. Tensor ops only, so the exporter can trace it."""
    if not shift:
        return torch.zeros(Hp, Wp, dtype=torch.long)
    rows, cols = torch.arange(Hp), torch.arange(Wp)
    row_band = (rows >= Hp - w).long() + (rows >= Hp - shift).long()
    col_band = (cols >= Wp - w).long() + (cols >= Wp - shift).long()
    return row_band[:, None] * 3 + col_band[None, :]


@lru_cache(maxsize=8)  # a few image/tile sizes × 2 shifts
def attention_mask(H: int, W: int, Hp: int, Wp: int, w: int, shift: int):
    """The windows that need masking and their additive masks (nM, nM×1×N×N): -inf between tokens
    of different shifted regions, and from real queries to padded keys. None if no window does."""
    if shift == 0 and (H, W) == (Hp, Wp):
        return None
    region = shift_regions(Hp, Wp, w, shift)
    padded = torch.ones(Hp, Wp, dtype=torch.bool)
    padded[:H, :W] = False
    padded = torch.roll(padded, (-shift, -shift), (0, 1))
    region = window_partition(region[None, :, :, None], w)[0, :, :, 0]  # nW×N
    padded = window_partition(padded[None, :, :, None], w)[0, :, :, 0]
    blocked = region[:, :, None] != region[:, None, :]
    blocked |= padded[:, None, :] & ~padded[:, :, None]
    windows = blocked.flatten(1).any(1).nonzero().squeeze(1)
    if windows.numel() == 0:
        return None
    mask = torch.zeros(len(windows), 1, w * w, w * w).masked_fill(blocked[windows, None], float("-inf"))
    return windows, mask


def export_attention_mask(Hp: int, Wp: int, w: int, shift: int):
    """`attention_mask` from tensor ops alone, for torch.export (sizes on the window grid, which
    derain.export guarantees): which windows need a mask is data-dependent, so all get one."""
    if not shift:
        return None
    region = window_partition(shift_regions(Hp, Wp, w, shift)[None, :, :, None], w)[0, :, :, 0]  # nW×N
    blocked = region[:, :, None] != region[:, None, :]
    mask = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))[:, None]
    return torch.arange(blocked.shape[0]), mask


def _window_order(H: int, W: int, w: int, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the window grid, shift cyclically by -shift and split into windows, as index maps:
    `gather[i]` is the row-major token at slot i of the windows (H·W for padding), and `scatter[t]`
    the slot of token t. One gather each way replaces pad + roll + partition and its inverse."""
    Hp, Wp = -(-H // w) * w, -(-W // w) * w
    rows = torch.roll(torch.arange(Hp), -shift)  # slot r holds row (r + shift) mod Hp
    cols = torch.roll(torch.arange(Wp), -shift)
    source = rows[:, None] * W + cols[None, :]
    source = torch.where((rows[:, None] < H) & (cols[None, :] < W), source, H * W)
    gather = window_partition(source[None, :, :, None], w).reshape(-1)
    scatter = torch.zeros(H * W + 1, dtype=torch.long).index_put((gather,), torch.arange(Hp * Wp))
    return gather, scatter[: H * W]


window_order = lru_cache(maxsize=8)(_window_order)


def take_tokens(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """x.index_select(1, index) for B×n×C tokens, where index n (one past the end) reads zeros: the
    window padding. `index` moves every real token to exactly one place and `inverse` moves it back,
    so the gradient is `inverse`'s gather; index_select's own, a scatter-add, trains slower on a CPU."""
    if torch.is_grad_enabled() and x.requires_grad:
        return TakeTokens.apply(x, index, inverse)
    if index.shape[0] > x.shape[1]:
        x = F.pad(x, (0, 0, 0, 1))
    return x.index_select(1, index)


class TakeTokens(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index, inverse):
        ctx.save_for_backward(index, inverse)
        return take_tokens(x, index, inverse)

    @staticmethod
    def backward(ctx, grad):
        index, inverse = ctx.saved_tensors
        return take_tokens(grad, inverse, index), None, None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v, fused (SDPA)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v for B×nW×h×N×d windows and an nW×h×N×N (or 1×h×N×N) bias, written
    out. When the bias needs a gradient (training) on the CPU, SDPA runs its math path, whose NaN-safe
    softmax adds three full passes over the scores; this form trains faster (benchmarks/bench_train.py)."""
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias).softmax(-1) @ v


class WindowAttention(nn.Module):
    """Multi-head self-attention inside w×w windows, with a learned relative position bias.

    Inference and CUDA run all windows through one fused attention call with the shared bias, and
    recompute the few windows that need a shift or padding mask (the last row and column of windows)
    with it. CPU training adds each window's mask to its bias instead and runs the plain form once."""

    def __init__(self, dim: int, num_heads: int, window_size: int):
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        w = window_size
        self.relative_position_bias = nn.Parameter(torch.zeros((2 * w - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]) + (w - 1)  # 2×N×N, each in [0, 2w-2]
        self.register_buffer("relative_position_index", rel[0] * (2 * w - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, masked=None) -> torch.Tensor:
        B, nW, N, C = x.shape
        h = self.num_heads
        qkv = self.qkv(x).view(B, nW, N, 3, h, C // h)
        q, k, v = (t.transpose(2, 3) for t in qkv.unbind(3))  # B×nW×h×N×d, strided views
        bias = self.relative_position_bias[self.relative_position_index].permute(2, 0, 1)[None]
        bias = bias.to(q.dtype).contiguous()  # h×N×N in order: a strided bias adds 2× slower
        if masked is not None:
            windows, mask = masked[0].to(x.device), masked[1].to(x.device, q.dtype)
        if torch.is_grad_enabled() and bias.requires_grad and q.device.type == "cpu":
            if masked is not None:
                bias = bias + q.new_zeros(nW, 1, N, N).index_copy(0, windows, mask)
            return self.proj(plain_attention(q, k, v, bias).transpose(2, 3).reshape(B, nW, N, C))
        q, k, v = (t.flatten(0, 1) for t in (q, k, v))  # (B·nW)×h×N×d
        out = attention(q, k, v, bias)
        if masked is not None:
            rows = (torch.arange(B, device=x.device)[:, None] * nW + windows).flatten()
            mask = (bias + mask).repeat(B, 1, 1, 1)
            out = out.index_put((rows,), attention(q[rows], k[rows], v[rows], mask))
        return self.proj(out.transpose(1, 2).reshape(B, nW, N, C))


BAND_MAX = 128  # sides up to this are averaged by band matrices, longer ones by pooling
NARROW_BAND_MAX, NARROW = 512, 8  # and up to 512 for the SE's few channels (6 in the bundled model)


@lru_cache(maxsize=16)
def band_matrix(n: int, k: int, device: torch.device) -> torch.Tensor:
    """n×n: row i averages the entries within k//2 of i (fewer at the borders)."""
    i = torch.arange(n, device=device)
    near = ((i[:, None] - i[None, :]).abs() <= k // 2).float()
    return near / near.sum(1, keepdim=True)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k×k neighbourhood (stride 1, same size, border-aware). k=0: global mean.
    On sides up to BAND_MAX two small matrix products replace the two pooling passes: far faster
    on a CPU, backward included, than avg_pool2d (benchmarks/bench_train.py). A few channels take
    them up to NARROW_BAND_MAX, on an NCHW copy: the SE's 6 channels at 256² in 4.6 ms against
    pooling's 11.2 (inference at 1 MP runs 18 of them)."""
    if k == 0:
        return x.mean((2, 3), keepdim=True)
    C, H, W = x.shape[-3:]
    if torch.compiler.is_exporting():
        return pooled_box_mean(x, k)
    if max(H, W) <= BAND_MAX:
        return band_box_mean(x, k)
    if C <= NARROW and max(H, W) <= NARROW_BAND_MAX:  # pooling a few channels-last channels is slow
        return band_box_mean(x.contiguous(), k).contiguous(memory_format=torch.channels_last)
    return pooled_box_mean(x, k)


def band_box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    B, C, H, W = x.shape
    rows, cols = (band_matrix(n, k, x.device).to(x.dtype) for n in (H, W))
    if not x.is_contiguous(memory_format=torch.channels_last):
        return rows @ (x @ cols.T)
    t = cols @ x.permute(0, 2, 3, 1)  # channels-last stays so: B×H×W×C, along W
    t = rows @ t.reshape(B, H, W * C)  # along H
    return t.view(B, H, W, C).permute(0, 3, 1, 2)


def pooled_box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    r = k // 2
    x = F.avg_pool2d(x, (1, k), 1, (0, r), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), 1, (r, 0), count_include_pad=False)


class LocalBranch(nn.Module):
    """The local CNN of CA-ViT: 1×1 squeeze, 3×3, 1×1 expand, then channel attention (SE).

    SE pools over a se_window×se_window neighbourhood (0 = whole image, as in CA-ViT); a finite
    window bounds the receptive field, so tiled inference matches whole-image inference. Pooling
    commutes with the linear 1×1 expand, so the narrow hidden features are pooled instead, and
    expand folds into the SE's first 1×1 conv."""

    def __init__(self, dim: int, reduction: int, se_window: int):
        super().__init__()
        hidden, squeezed = max(dim // reduction, 1), max(dim // 8, 1)
        self.se_window = se_window
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
        )
        self.expand = nn.Conv2d(hidden, dim, 1)
        self.channel_attention = nn.Sequential(
            nn.Conv2d(dim, squeezed, 1), nn.ReLU(inplace=True), nn.Conv2d(squeezed, dim, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×C×H×W
        hidden = self.body(x)
        return self.expand(hidden) * self.channel_attention_of(box_mean(hidden, self.se_window))

    def channel_attention_of(self, pooled: torch.Tensor) -> torch.Tensor:
        """channel_attention(expand(pooled)), with the two linear 1×1 convs it starts with fused
        into one hidden→squeezed conv, so nothing dim-wide is computed for the attention."""
        squeeze, *rest = self.channel_attention
        weight = squeeze.weight.flatten(1) @ self.expand.weight.flatten(1)
        bias = squeeze.weight.flatten(1) @ self.expand.bias + squeeze.bias
        out = F.conv2d(pooled, weight[:, :, None, None], bias)
        for layer in rest:
            out = layer(out)
        return out


class AGLFViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float,
                 shift: int, local_reduction: int = 8, se_window: int = 31):
        super().__init__()
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.local = LocalBranch(dim, local_reduction, se_window)
        self.alpha = nn.Parameter(torch.ones(1))  # weight of the global branch
        self.beta = nn.Parameter(torch.ones(1))  # weight of the local branch
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    @torch.no_grad()
    def start_as_identity(self) -> None:
        """Make the block pass its input through unchanged (α = β = 0, the MLP's output layer zero) and still
        learn: α and β get gradients at once, as in ReZero, so a trained network can grow deeper in place."""
        for p in (self.alpha, self.beta, self.mlp[-1].weight, self.mlp[-1].bias):
            p.zero_()

    def global_branch(self, y: torch.Tensor) -> torch.Tensor:
        B, H, W, C = y.shape
        w, s = self.window_size, self.shift
        Hp, Wp = -(-H // w) * w, -(-W // w) * w
        if torch.compiler.is_exporting():  # symbolic sizes: no caches, no data-dependent shapes
            order, mask = _window_order(H, W, w, s), export_attention_mask(Hp, Wp, w, s)
        else:
            order, mask = window_order(H, W, w, s), attention_mask(H, W, Hp, Wp, w, s)
        gather, scatter = (t.to(y.device) for t in order)
        windows = take_tokens(y.reshape(B, H * W, C), gather, scatter).view(B, -1, w * w, C)
        out = self.attn(windows, mask)
        return take_tokens(out.reshape(B, Hp * Wp, C), scatter, gather).view(B, H, W, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×H×W×C
        y = self.norm1(x)
        local = self.local(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        g = self.global_branch(y)  # under autocast g and local are bf16: weight them in bf16 too
        x = x + self.alpha.to(g.dtype) * g + self.beta.to(local.dtype) * local
        return x + self.mlp(self.norm2(x))
