"""Tensor-level inference: devices and precision, tiling with smooth blending, self-ensemble,
and tile sizes from a memory budget. Images are B×3×H×W float tensors in [0, 1].

Why tiles can match whole-image inference exactly: every layer of the network looks at a bounded
neighbourhood (`receptive_radius`), and windows are laid on a grid anchored at the top-left
corner. Tiles start at multiples of `alignment` (patch × window pixels), so their window grid is
the image's. A tile's output differs from the whole-image output only within the receptive
radius of its inner edges; the blending ramps give those pixels weight 0 (see `axis_weights`).
"""
from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch

from derain.config import ModelConfig
from derain.data.rain_bank import rain_angle, rain_layer
from derain.errors import DerainError
from derain.metrics.streaks import orientation_energy

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_MAX_MEMORY = 1 << 30  # activation budget when neither a tile size nor a budget is given
CPU_TILE = 1024  # on the CPU, tiles up to ~1 MP run as fast per pixel as whole photos, in less memory

Forward = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]  # (image, per-pixel threshold or None)
ANGLE_SIDE = 1024  # px: the rain angle is found on the central ANGLE_SIDE² of larger photos (9 s saved at 12 MP)
ANGLE_MIN = 32  # px: a photo narrower than this has no rain angle to find (the line kernels are 25 px): `shrink` only
SCALE_SIDE = 1600  # px: `--scale auto` derains longer photos at this long side (their rain is wider than trained)
SCALE_MIN = 32  # px: a working scale never shrinks the short side below this
# `rain_angle="auto"` (docs/inference.md, "Rain blown off the vertical"; chosen on training photos, session 46)
WIND_ANGLES = tuple(a for a in range(-85, 90, 5) if abs(a) >= 35)  # where the model's upright pass misses rain
WIND_CROP = 384  # px: the central square the turned trial pass runs on, and the two are compared on
WIND_RATIO = 6.0  # the turned pass must change the square this many times more than the upright one (squared)...
WIND_FLOOR = 80.0  # ...and by more than this mean squared change, in grey levels²: rain, not a few scene lines


# ---------------------------------------------------------------- devices and precision

def select_device(name: str | None = None) -> torch.device:
    """`None` or "auto": cuda, then mps, then cpu. Otherwise the named device, if it is there."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DerainError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DerainError(f"device {name!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DerainError(f"device {name!r} requested but MPS is not available")
    return device


def default_threads() -> int:
    """CPU threads for torch when none are asked for: the cores this process may run on (affinity,
    or a cgroup quota), less those other processes keep busy right now. Competing threads cost more
    than they give: with one of two cores busy, a 1 MP photo took 4-6 s on 2 threads, 2.8-3.6 s on 1."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    threads = min(len(cpus), torch.get_num_threads())
    quota = _cgroup_cpu_quota()
    if quota is not None:  # a share of the machine: others' load does not shrink it
        return max(1, min(threads, math.ceil(quota)))
    return 1 if threads <= 1 else max(1, threads - round(_busy_cores(cpus)))


def _cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs allowed by a cgroup v2 quota ("200000 100000" -> 2.0), None when unlimited or unknown."""
    try:
        quota, period = open(path).read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _busy_cores(cpus: set[int], interval: float = 0.1, path: str = "/proc/stat") -> float:
    """How many of `cpus` are busy, from two readings of the kernel's CPU times `interval` s apart
    (while this process sleeps); 0 where there is no /proc/stat."""
    def read() -> dict[int, tuple[int, int]]:
        times = {}
        with open(path) as stat:
            for line in stat:
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
                    times[int(name[3:])] = (sum(ticks), ticks[3] + ticks[4])
        return times

    try:
        before = read()
        time.sleep(interval)
        after = read()
    except (OSError, ValueError, IndexError):
        return 0.0
    busy = 0.0
    for cpu, (total, idle) in after.items():
        elapsed = total - before.get(cpu, (total, idle))[0]
        if elapsed > 0:
            busy += 1 - (idle - before[cpu][1]) / elapsed
    return busy


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe is not None and probe() for probe in probes)


def autocast_dtype(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for fp16/bf16, None for fp32. fp16 is for GPUs; bf16 also for CPUs that have it."""
    if precision is None:
        return None
    if precision not in PRECISIONS:
        raise DerainError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is torch.float16 and device.type == "cpu":
        raise DerainError("precision fp16 needs a GPU (cuda or mps); on the CPU use fp32, or bf16 where it has it")
    if dtype is torch.bfloat16 and device.type == "cpu" and not cpu_has_bf16():
        raise DerainError("precision bf16 on the CPU needs bf16 instructions (AVX-512 BF16 or AMX), which this "
                          "CPU lacks; use fp32")
    return dtype


def model_forward(net: torch.nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> Forward:
    """A function that runs `net` on `device` (under autocast when `dtype` is set) and returns
    float32 on the input's device, so large images can stay in host memory."""
    def forward(x: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return net(x.to(device), None if threshold is None else threshold.to(device)).float().to(x.device)
    return forward


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """A 3×H×W tensor in [0, 1] as the H×W×3 uint8 photo the rain measures read."""
    return (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def streak_threshold(cfg: ModelConfig, img: torch.Tensor) -> torch.Tensor | None:
    """D_dr's threshold per pixel for B×3×H×W in [0, 1]: `shrink_streaks` on the input's own rain streaks
    (derain.data.rain_bank.rain_layer over `streak_level` grey levels, at the photo's rain angle) and `shrink`
    elsewhere; B×1×H×W on `img`'s device, or None when the config has one threshold."""
    if not cfg.shrink_streaks:
        return None
    maps = []
    for x in img:
        rgb = as_uint8(x)
        if min(rgb.shape[:2]) < ANGLE_MIN:
            maps.append(torch.full(rgb.shape[:2], cfg.shrink))
            continue
        top, left = max(0, (rgb.shape[0] - ANGLE_SIDE) // 2), max(0, (rgb.shape[1] - ANGLE_SIDE) // 2)
        with scipy.fft.set_workers(torch.get_num_threads()):  # its FFTs on derain's threads too
            angle = rain_angle(rgb[top:top + ANGLE_SIDE, left:left + ANGLE_SIDE])
        streaks = rain_layer(rgb, angle) > cfg.streak_level
        maps.append(torch.from_numpy(np.where(streaks, cfg.shrink_streaks, cfg.shrink).astype(np.float32)))
    return torch.stack(maps)[:, None].to(img.device)


# ---------------------------------------------------------------- receptive field and memory

def alignment(cfg: ModelConfig) -> int:
    """Pixels between window-grid lines: tile origins must be multiples of this."""
    return cfg.patch_size * cfg.window_size


def receptive_radius(cfg: ModelConfig) -> int | None:
    """How far (in pixels, each way) an output pixel can see; None if unbounded (se_window=0).

    In tokens: stem conv 1, spatial attention 2 convs, each block max(window attention w-1,
    local 3×3 conv 1 + channel-attention box se_window//2), fuse conv 1, SPP box max(k)//2,
    head conv 1. A token spans patch_size pixels, which adds up to patch_size-1 more. A detail
    path adds its 3 full-resolution convs after the fusion; its context branch sees 15 px of the
    image before them.
    """
    if cfg.se_window == 0:
        return None
    per_block = max(cfg.window_size - 1, 1 + cfg.se_window // 2)
    tokens = 1 + 2 + cfg.depth * per_block + 1 + max(cfg.spp_kernels) // 2 + 1
    coarse = (tokens + 1) * cfg.patch_size - 1
    return max(coarse, 15 if cfg.context_dim else 0) + (3 if cfg.detail_dim else 0)


def activation_bytes_per_pixel(cfg: ModelConfig, dtype_bytes: int = 4) -> float:
    """Peak bytes of activations per input pixel, from the config: an upper bound.

    Inside a block up to about 16·dim values per token are alive at once (residual stream, normed
    copy, window copies, q/k/v, local branch, MLP hidden, SPP pyramid), plus (heads + 2)·window²
    for attention scores and masks. The default preset measures 0.8-1.0 KB per pixel on the CPU
    against 1.06 KB from this formula (benchmarks/bench_infer.py checks the peak RSS). A full-resolution
    detail path (`detail_dim`) adds about 6·detail_dim values per pixel: the upsampled residual, its
    activation, the image branch, their concatenation (two) and the fusion conv alive together; a
    context branch (`context_dim`) about 2·context_dim more: one conv's input and output.
    """
    per_token = 16 * cfg.dim + (cfg.num_heads + 2) * cfg.window_size ** 2
    return (per_token / cfg.patch_size ** 2 + 6 * cfg.detail_dim + 2 * cfg.context_dim) * dtype_bytes


def tile_for_budget(cfg: ModelConfig, max_memory: int, overlap: int, dtype_bytes: int = 4,
                    given: str | None = None) -> int:
    """The largest aligned square tile whose activations fit in `max_memory` bytes (`given`: the
    budget as the user wrote it, for the error message)."""
    side = math.isqrt(int(max_memory / activation_bytes_per_pixel(cfg, dtype_bytes)))
    side -= side % alignment(cfg)
    smallest = 2 * overlap + alignment(cfg)
    if side < smallest:
        need = smallest ** 2 * activation_bytes_per_pixel(cfg, dtype_bytes)
        raise DerainError(f"max memory {given or format_bytes(max_memory)} is too small for overlap {overlap}: "
                          f"tiles need at least {smallest}×{smallest} pixels, about {format_bytes(need)}; "
                          "lower --overlap or raise the budget")
    return side


def choose_tile(cfg: ModelConfig, height: int, width: int, tile: int | None, overlap: int,
                max_memory: int | None, dtype_bytes: int = 4, on_cpu: bool = False) -> int | None:
    """Tile side for an image, or None for a single pass. `tile`: 0 never tiles, None picks from
    the memory budget (DEFAULT_MAX_MEMORY when none is given; then at most CPU_TILE on the CPU)."""
    if tile == 0:
        return None
    if tile is None:
        budget = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
        tile = tile_for_budget(cfg, budget, overlap, dtype_bytes)
        if on_cpu and max_memory is None:
            tile = min(tile, CPU_TILE - CPU_TILE % alignment(cfg))
        elif height * width * activation_bytes_per_pixel(cfg, dtype_bytes) <= budget:
            return None
    return None if height <= tile and width <= tile else tile


def align_tiling(cfg: ModelConfig, tile: int | None, overlap: int) -> tuple[int | None, int]:
    """Round the tile down and the overlap up to multiples of `alignment`; tiles must be at least
    twice the overlap plus one alignment step, so that no two ramps touch."""
    step = alignment(cfg)
    if overlap < 0:
        raise DerainError(f"overlap must be >= 0, got {overlap}")
    aligned_overlap = -(-overlap // step) * step
    if tile is None or tile == 0:
        return tile, aligned_overlap
    if tile < 0:
        raise DerainError(f"tile must be >= 0, got {tile}")
    aligned_tile = tile - tile % step
    smallest = 2 * aligned_overlap + step
    if aligned_tile < smallest:
        raise DerainError(f"tile {_rounded(tile, aligned_tile, 'down', step)} is too small for overlap "
                          f"{_rounded(overlap, aligned_overlap, 'up', step)}: use a tile of at least {smallest}, "
                          "or a smaller overlap")
    return aligned_tile, aligned_overlap


def _rounded(given: int, aligned: int, way: str, step: int) -> str:
    """`16 (rounded down to 0, a multiple of 32 px)`: the value as given, then as aligned."""
    return str(given) if given == aligned else f"{given} (rounded {way} to {aligned}, a multiple of {step} px)"


OVERLAP_WARNING = 2.0  # warn when overlapping tiles cost this many times the work of one pass


def check_tiling(cfg: ModelConfig, tile: int | None, overlap: int, max_memory: int | str | None,
                 dtype_bytes: int = 4) -> str | None:
    """Check the tiling options once, before any image (errors name the values as given). Returns
    a warning when the tiles they allow are so small that recomputed overlap dominates, else None."""
    tile_aligned, overlap_aligned = align_tiling(cfg, tile, overlap)
    if tile == 0 or (tile is None and max_memory is None):
        return None  # never tiled, or tiles of at least CPU_TILE
    if tile is None:
        side = tile_for_budget(cfg, parse_bytes(max_memory), overlap_aligned, dtype_bytes, given=str(max_memory))
        source = f"max memory {max_memory}"
    else:
        side, source = tile_aligned, f"tile {tile}"
    work = (side / (side - overlap_aligned)) ** 2
    if work < OVERLAP_WARNING:
        return None
    return (f"{source} makes {side}-px tiles that overlap by {overlap_aligned} px: about {work:.1f}× the work "
            "of one pass; raise it or lower --overlap")


def format_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} TiB"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_bytes(text: str | int) -> int:
    """'2GB', '512MiB', '1.5G' or a plain number of bytes. K/M/G/T are powers of 1024."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise DerainError(f"cannot read memory size {text!r}; write e.g. 2GB, 512MB or 1073741824")
    number, unit = float(match[1]), match[2].lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


# ---------------------------------------------------------------- tiling

def tile_spans(length: int, tile: int, overlap: int, step: int) -> list[tuple[int, int]]:
    """[start, end) of the tiles along one axis. Starts are multiples of `step`; consecutive tiles
    overlap by at least `overlap`; the last tile runs to the end (up to step-1 beyond `tile`).
    Tiles shrink to the smallest aligned size that still needs no more of them, so the overlap
    is spread evenly instead of a nearly full last tile being recomputed."""
    if length <= tile:
        return [(0, length)]
    count = -(-(length - overlap) // (tile - overlap))
    balanced = -(-(length + (count - 1) * overlap) // count)
    tile = min(tile, max(-(-balanced // step) * step, 2 * overlap + step))
    last = (length - tile) // step * step
    starts = [s for s in range(0, length - tile, tile - overlap) if s < last] + [last]
    return [(s, s + tile) for s in starts[:-1]] + [(last, length)]


def _rise(x: torch.Tensor, centre: float, half_width: float) -> torch.Tensor:
    """Raised cosine from 0 (before centre - half_width) to 1 (after centre + half_width)."""
    if half_width == 0:
        return (x > centre).float()
    t = ((x - centre + half_width) / (2 * half_width)).clamp(0, 1)
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def axis_weights(spans: list[tuple[int, int]], overlap: int) -> list[torch.Tensor]:
    """Blending weights of each tile along one axis; at every pixel they sum to 1.

    Between two tiles the weight moves from one to the other along a raised cosine over the middle
    half of their overlap, so a tile's pixels within overlap/4 of its inner edges get weight 0.
    """
    weights = []
    for i, (start, end) in enumerate(spans):
        x = torch.arange(start, end, dtype=torch.float64) + 0.5
        w = torch.ones_like(x)
        if i > 0:
            w *= _rise(x, (start + spans[i - 1][1]) / 2, overlap / 4)
        if i < len(spans) - 1:
            w *= 1 - _rise(x, (spans[i + 1][0] + end) / 2, overlap / 4)
        weights.append(w.float())
    return weights


def tiled(forward: Forward, img: torch.Tensor, tile: int, overlap: int, step: int,
          threshold: torch.Tensor | None = None, after_tile: Callable[[], None] | None = None) -> torch.Tensor:
    """Run `forward` tile by tile (with the matching tile of `threshold`) and blend, calling `after_tile`
    after each. The result (float32) stays on `img`'s device."""
    H, W = img.shape[-2:]
    rows, cols = tile_spans(H, tile, overlap, step), tile_spans(W, tile, overlap, step)
    row_weights, col_weights = axis_weights(rows, overlap), axis_weights(cols, overlap)
    out = torch.zeros(img.shape, dtype=torch.float32, device=img.device)
    for (y0, y1), wy in zip(rows, row_weights):
        for (x0, x1), wx in zip(cols, col_weights):
            weight = (wy[:, None] * wx[None, :]).to(img.device)
            part = None if threshold is None else threshold[..., y0:y1, x0:x1]
            out[..., y0:y1, x0:x1] += forward(img[..., y0:y1, x0:x1], part) * weight
            if after_tile:
                after_tile()
    return out


# ---------------------------------------------------------------- self-ensemble

def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations (k in 0..7): rotate by k·90°, then mirror if k >= 4."""
    x = torch.rot90(x, k % 4, (-2, -1))
    return x.flip(-1) if k >= 4 else x


def inverse_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(k % 4), (-2, -1))


RAIN_KEEPING = (0, 2, 4, 6)  # identity, 180°, the two mirrors: a vertical line stays vertical


def self_ensemble(forward: Forward, img: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of forward() over the 4 flips of `img` (and `threshold`) that keep rain's direction
    (RAIN_KEEPING), each mapped back. A 90° rotation would turn the streaks horizontal, which no training
    crop has."""
    out = forward(img, threshold)
    for k in RAIN_KEEPING[1:]:
        out += inverse_dihedral(forward(dihedral(img, k), None if threshold is None else dihedral(threshold, k)), k)
    return out / len(RAIN_KEEPING)


# ---------------------------------------------------------------- rain off the vertical

def _turn_grid(size: tuple[int, int], source: tuple[int, int], degrees: float, device) -> torch.Tensor:
    """grid_sample's grid for a size canvas whose offsets from its centre, turned by `degrees`, are the
    source's: rain leaning `degrees` from vertical in the source (positive: its top to the right, like /)
    runs vertically on the canvas (degrees > 0), and back (degrees < 0)."""
    (h, w), (sh, sw) = size, source
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    dy = torch.arange(h, dtype=torch.float64, device=device)[:, None] - (h - 1) / 2
    dx = torch.arange(w, dtype=torch.float64, device=device)[None, :] - (w - 1) / 2
    sx, sy = c * dx - s * dy + (sw - 1) / 2, s * dx + c * dy + (sh - 1) / 2  # source pixel coordinates
    grid = torch.stack([(2 * sx + 1) / sw - 1, (2 * sy + 1) / sh - 1], -1)  # align_corners=False
    return grid[None].float()


def turn_rain_upright(img: torch.Tensor, degrees: float) -> torch.Tensor:
    """B×C×H×W turned so that rain leaning `degrees` from vertical runs vertically, on a canvas that holds
    all of it with 2 px to spare (bicubic, clipped to [0, 1]; the corners mirror the photo)."""
    h, w = img.shape[-2:]
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    size = (math.ceil(h * c + w * s) + 4, math.ceil(w * c + h * s) + 4)  # 2 px spare: bicubic's reach
    grid = _turn_grid(size, (h, w), degrees, img.device).expand(img.shape[0], -1, -1, -1)
    turned = torch.nn.functional.grid_sample(img, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return turned.clamp_(0.0, 1.0)


def turn_back(change: torch.Tensor, degrees: float, size: tuple[int, int]) -> torch.Tensor:
    """`turn_rain_upright`'s inverse for a change made on its canvas: B×C×size (bicubic)."""
    grid = _turn_grid(size, change.shape[-2:], -degrees, change.device).expand(change.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(change, grid, mode="bicubic", padding_mode="zeros", align_corners=False)


def wind_candidate(rgb: np.ndarray) -> float:
    """The angle of WIND_ANGLES along which a uint8 H×W×3 photo has the most oriented fine detail
    (`orientation_energy`): where rain blown off the vertical would be, if there is any."""
    return float(WIND_ANGLES[int(np.argmax(orientation_energy(rgb, WIND_ANGLES)))])


def find_rain_angle(forward: Forward, cfg: ModelConfig, img: torch.Tensor, upright: torch.Tensor,
                    **trial) -> float | None:
    """`rain_angle="auto"` for one 1×3×H×W photo and its upright output: the angle to turn it by, or None.
    On the central WIND_CROP² square, a trial pass turned by `wind_candidate`'s angle wins only if it changes
    the square WIND_RATIO times more than the upright output does, and by more than WIND_FLOOR: the model
    finds rain it knows once the photo is turned, not the few scene lines any turn makes upright. `trial`:
    derain_tensor's tiling, memory and strength options for the trial pass."""
    h, w = img.shape[-2:]
    if min(h, w) < ANGLE_MIN:
        return None
    top, left = max(0, (h - WIND_CROP) // 2), max(0, (w - WIND_CROP) // 2)
    square = (..., slice(top, top + WIND_CROP), slice(left, left + WIND_CROP))
    crop = img[square]
    with scipy.fft.set_workers(torch.get_num_threads()):
        angle = wind_candidate(as_uint8(crop[0]))
    turned = derain_tensor(forward, cfg, crop, rain_angle=angle, **trial).clamp_(0, 1) - crop
    turned_change = float(turned.mul_(255).square_().mean())
    upright_change = float((upright[square].clamp(0, 1) - crop).mul_(255).square_().mean())
    return angle if turned_change > WIND_FLOOR and turned_change > WIND_RATIO * upright_change else None


# ---------------------------------------------------------------- working scale (--scale)

def auto_scale(height: int, width: int) -> float:
    """`--scale auto`: 1 up to SCALE_SIDE px on the long side (the size of the real rainy photos the model
    learnt from); above it, the factor that brings the long side to SCALE_SIDE."""
    return max(1.0, max(height, width) / SCALE_SIDE)


def working_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """H×W at 1/`scale`, rounded, the short side kept at SCALE_MIN px or more (or the photo's own)."""
    h, w = size
    scale = min(scale, max(1.0, min(h, w) / SCALE_MIN))
    return max(1, round(h / scale)), max(1, round(w / scale))


def apply_change(img: torch.Tensor, change: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """`img` plus a change the model made on a turned or smaller copy of it, never brightening for a
    darken-only model (bicubic resampling rings past 0 around sharp changes). Sums into `change`, a
    full-size buffer of its own: one photo-sized float tensor fewer (576 MB at 48 MP)."""
    return (change.clamp_(max=0.0) if cfg.darken_only else change).add_(img)


# ---------------------------------------------------------------- all together

def derain_tensor(forward: Forward, cfg: ModelConfig, img: torch.Tensor, *, tile: int | None = None,
                  overlap: int = 32, tta: bool = False, max_memory: int | None = None,
                  dtype_bytes: int = 4, rain_angle: float | str | None = None, scale: float = 1.0,
                  progress: Callable[[int, int], None] | None = None, strength: float = 1.0,
                  on_angle: Callable[[float | None], None] | None = None) -> torch.Tensor:
    """Derain B×3×H×W in [0, 1]: tiles from `tile` or the memory budget, optional self-ensemble, and
    D_dr's threshold per pixel from the whole image when the config asks for one (streak_threshold).
    With `scale` > 1 the model works on the photo shrunk by that factor (antialiased), so rain that many
    times wider than it learnt reaches it at its own width, and only its change is enlarged (bicubic) and
    applied: the photo keeps its full-resolution detail. With `rain_angle` (degrees from vertical, positive
    like /), the photo is turned so its rain runs vertically, as the model knows it, and only the change it
    makes there is turned back and applied; "auto" finds it per photo (`find_rain_angle`), after any
    `scale`, and tells `on_angle` what it found (None: upright). `strength` divides D_dr's thresholds (2: half the threshold, so
    fainter changes pass). `progress(done, total)` is called after each network pass over a
    tile (the whole image is one tile; `tta` makes four passes of each). Returns float32 on `img`'s device,
    not clipped."""
    size = img.shape[-2:]
    trial = dict(tile=tile, overlap=overlap, max_memory=max_memory, dtype_bytes=dtype_bytes, strength=strength)
    options = dict(trial, tta=tta, progress=progress, on_angle=on_angle)
    work = working_size(size, scale) if scale > 1 else tuple(size)
    if work != tuple(size):
        small = torch.nn.functional.interpolate(img, size=work, mode="bicubic",
                                                antialias=True, align_corners=False).clamp_(0.0, 1.0)
        change = derain_tensor(forward, cfg, small, rain_angle=rain_angle, **options) - small
        change = torch.nn.functional.interpolate(change, size=size, mode="bicubic", align_corners=False)
        return apply_change(img, change, cfg)
    if rain_angle == "auto":  # upright first; turned again only where find_rain_angle says so
        outs = []
        for one in img.split(1):
            out = derain_tensor(forward, cfg, one, **options)
            angle = find_rain_angle(forward, cfg, one, out, **trial)
            if on_angle:
                on_angle(angle)
            if angle is not None:
                del out  # the upright output, before the turned pass allocates its own
                out = derain_tensor(forward, cfg, one, rain_angle=angle, **options)
            outs.append(out)
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    if rain_angle:
        turned = turn_rain_upright(img, rain_angle)
        change = derain_tensor(forward, cfg, turned, **options) - turned
        return apply_change(img, turn_back(change, rain_angle, size), cfg)
    tile, overlap = align_tiling(cfg, tile, overlap)
    tile = choose_tile(cfg, *img.shape[-2:], tile, overlap, max_memory, dtype_bytes, on_cpu=img.device.type == "cpu")

    whole = tile is None or max(img.shape[-2:]) <= tile
    tiles = 1 if whole else math.prod(len(tile_spans(n, tile, overlap, alignment(cfg))) for n in img.shape[-2:])
    total, done = (len(RAIN_KEEPING) if tta else 1) * tiles, 0

    def count_tile() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    def one_pass(x: torch.Tensor, threshold: torch.Tensor | None) -> torch.Tensor:
        if whole:
            out = forward(x, threshold)
            count_tile()
            return out
        return tiled(forward, x, tile, overlap, alignment(cfg), threshold, count_tile)

    threshold = streak_threshold(cfg, img)
    if strength != 1 and cfg.shrink:
        threshold = (img.new_full((img.shape[0], 1, *img.shape[-2:]), cfg.shrink) if threshold is None else threshold)
        threshold = threshold / strength
    return self_ensemble(one_pass, img, threshold) if tta else one_pass(img, threshold)
