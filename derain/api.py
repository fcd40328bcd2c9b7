"""The Python API: `derain.load()` gives a `Derainer`, a callable that takes an image the way you
have it (numpy array, PIL image or torch tensor) and returns the derained image the same way.

    import derain
    from PIL import Image
    rainy = Image.open("photo.jpg")  # or a numpy array / torch tensor
    m = derain.load()            # the bundled model, or derain.load("path/to/model_dir")
    clean = m(rainy)             # same type, dtype and shape as `rainy`
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from derain.errors import DerainError
from derain.hub import from_pretrained, read_config, resolve_model
from derain.inference import (auto_scale, autocast_dtype, check_tiling, derain_tensor, model_forward, parse_bytes,
                              select_device)

_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0}
FLOAT_TOLERANCE = 0.01  # float images may overshoot 1 by this much (rounding, resampling)
_SHAPES = "H×W, H×W×C or N×H×W×C with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)"


def bundled_model_dir() -> Path:
    """Where the package keeps its default model: derain/assets/default_model/."""
    return Path(str(resources.files("derain").joinpath("assets", "default_model")))


def load_network(path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The deraining network of a model (see `derain.hub.resolve_model`: None or 'bundled' for the
    shipped model, a model directory or a training run directory), in eval mode."""
    path = resolve_model(path)
    architecture = read_config(path).get("architecture", "ImageNet")
    if architecture != "ImageNet":
        raise DerainError(f"{path}: holds a {architecture}, not a deraining network (ImageNet)")
    return from_pretrained(path, map_location=device)


def load(path: str | Path | None = None, device: str | None = None, tile: int | None = None,
         overlap: int = 32, tta: bool = False, precision: str | None = None,
         max_memory: int | str | None = None, rain_angle: float | str | None = "auto",
         scale: float | str = "auto", strength: float = 1.0) -> "Derainer":
    """Load a model (None or "bundled": the shipped model; a model directory; a training run
    directory) as a `Derainer`.

    device: None/"auto" picks cuda, then mps, then cpu. tile: tile side in pixels, 0 for a single
    pass, None to pick it from `max_memory` (bytes or a string like "2GB"; default 1 GiB).
    tta: average the 4 flips that keep rain's direction. precision: "fp32", or "fp16"/"bf16" on a GPU,
    "bf16" on a CPU with bf16 instructions (AVX-512 BF16 or AMX). rain_angle: for rain blown off the
    vertical, its lean in degrees (positive: the top to the right, like /); the photo is turned upright for
    the model, which knows rain within about 30 degrees of vertical (docs/model_history.md, session 36);
    "auto" (default) turns a photo only where the model finds far more rain turned than upright
    (docs/inference.md, "Rain blown off the vertical"); None or 0 keeps every photo upright.
    scale: the model works on the photo shrunk by this factor (1 or more) and only its change is enlarged
    back, for rain wider than it learnt (photos from a phone or camera at full size); "auto" (default): 1
    up to 1600 px on the long side, above it the factor that brings the long side to 1600 px.
    strength: D_dr's thresholds divided by it (default 1: the model's own); below 1 gentler, above 1 more of
    the network's change passes, which on real photos mostly darkens (docs/inference.md, "Strength").
    Bad tiling options raise here, not on the first image; tiles so small that overlap dominates
    give a warning.
    """
    rain_angle = check_rain_angle(rain_angle)
    scale = check_scale(scale)
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and strength > 0):
        raise DerainError(f"strength {strength}: give a number above 0 (1: the model's own thresholds)")
    torch_device = select_device(device)
    amp = autocast_dtype(precision, torch_device)
    net = load_network(path, torch_device)
    slow = check_tiling(net.config, tile, overlap, max_memory, dtype_bytes=4 if amp is None else 2)
    if slow:
        warnings.warn(slow, stacklevel=2)
    if strength != 1 and not net.config.shrink:
        warnings.warn(f"strength {strength:g} changes nothing: {path or 'the model'} has no threshold to divide",
                      stacklevel=2)
    return Derainer(net, torch_device, tile=tile, overlap=overlap, tta=tta, autocast=amp,
                    max_memory=None if max_memory is None else parse_bytes(max_memory), rain_angle=rain_angle,
                    scale=scale, strength=strength)


def check_rain_angle(angle: float | str | None) -> float | str | None:
    """`angle` as None, "auto" or degrees from vertical in [-90, 90]; anything else is a one-line DerainError."""
    if angle is None or angle == "auto":
        return angle
    try:
        value = float(angle)
    except (TypeError, ValueError):
        value = math.nan
    if not -90 <= value <= 90:
        shown = repr(angle) if isinstance(angle, str) else f"{value:g}"
        raise DerainError(f"rain angle {shown}: give degrees from vertical, -90 to 90 (positive leans like /), or 'auto'")
    return value


def check_scale(scale: float | str) -> float | str:
    """`scale` as "auto" or a float of 1 or more; anything else is a one-line DerainError."""
    if scale == "auto":
        return scale
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not value >= 1 or math.isinf(value):
        raise DerainError(f"scale {scale}: give 'auto' or a factor of 1 or more (1: the photo's own size)")
    return value


class FloatRangeError(DerainError, ValueError):
    """A float image with values above 1: a ValueError for API callers, one line for the CLI."""

    def __init__(self, top: float):
        super().__init__(f"float images are expected in [0, 1], but this one reaches {top:g}; for 0..255 "
                         "values pass uint8 (array.astype(np.uint8)) or divide by 255")
        self.top = top


class Derainer:
    """Callable deraining model. Accepts and returns, with the same type, dtype and shape:

    - numpy arrays: H×W, H×W×C or N×H×W×C (C = 1, 2, 3, 4), uint8, uint16 or float in [0, 1]
      (floats above 1 raise ValueError: pass 0..255 images as uint8);
    - PIL images (palette images come back as RGB/RGBA);
    - torch tensors: C×H×W or B×C×H×W, uint8 or float in [0, 1], on any device.

    Gray images are derained as RGB and averaged back to gray; alpha passes through untouched.
    Float results are clipped to [0, 1], integer results rounded.
    """

    def __init__(self, net: torch.nn.Module, device: torch.device, *, tile: int | None = None,
                 overlap: int = 32, tta: bool = False, autocast: torch.dtype | None = None,
                 max_memory: int | None = None, rain_angle: float | str | None = "auto", scale: float | str = "auto",
                 strength: float = 1.0):
        self.net, self.device, self.rain_angle, self.scale, self.strength = net, device, rain_angle, scale, strength
        self.tile, self.overlap, self.tta, self.max_memory = tile, overlap, tta, max_memory
        self.autocast = autocast
        self.progress: Callable[[int, int], None] | None = None  # called as (tiles done, tiles) within an image
        self.found_angle: float | None = None  # with rain_angle "auto": the angle the last image was turned by
        self._forward = model_forward(net, device, autocast)

    @property
    def config(self):
        return self.net.config

    def __call__(self, image):
        if isinstance(image, torch.Tensor):
            return self._tensor(image)
        if isinstance(image, np.ndarray):
            return self._array(image)
        from PIL import Image

        if isinstance(image, Image.Image):
            return self._pil(image)
        raise DerainError(f"cannot derain a {type(image).__name__}; pass a numpy array, PIL image or torch tensor")

    def scale_for(self, height: int, width: int) -> float:
        """The working scale a height × width image is derained at (`scale`, or `auto_scale`'s for "auto")."""
        return auto_scale(height, width) if self.scale == "auto" else self.scale

    def derain_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """1×3×H×W float32 in [0, 1] -> the same, clipped."""
        self.found_angle = None
        out = derain_tensor(self._forward, self.config, rgb, tile=self.tile, overlap=self.overlap,
                            tta=self.tta, max_memory=self.max_memory,
                            dtype_bytes=4 if self.autocast is None else 2, rain_angle=self.rain_angle,
                            scale=self.scale_for(*rgb.shape[-2:]), progress=self.progress, strength=self.strength,
                            on_angle=self._found)
        return out.clamp_(0.0, 1.0)

    def _found(self, angle: float | None) -> None:
        self.found_angle = angle

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (C = 1..4), any supported dtype -> the same, derained; one image at a time."""
        channels = x.shape[1]
        colour = 3 if channels >= 3 else 1
        if x.dtype in _SCALES:
            scale = _SCALES[x.dtype]
        elif x.dtype.is_floating_point:
            scale = 1.0
            top = float(x[:, :colour].amax()) if x.numel() else 0.0
            if top > 1.0 + FLOAT_TOLERANCE:
                raise FloatRangeError(top)
        else:
            raise DerainError(f"unsupported image dtype {x.dtype}; use uint8, uint16 or a float type in [0, 1]")
        outputs = []
        for item in x:
            rgb = item[None, :colour].to(torch.float32)  # a float32 input itself, read only
            if scale != 1.0:  # an integer input: rgb is a copy, scaled in place (no second photo-sized buffer)
                rgb.div_(scale)
            out = self.derain_rgb(rgb.expand(1, 3, *rgb.shape[-2:]).contiguous())
            if colour == 1:
                out = out.mean(1, keepdim=True)
            if scale != 1.0:
                out = out.mul_(scale).round_()
            out = out.to(x.dtype)
            outputs.append(out if channels == colour else torch.cat([out, item[None, colour:]], 1))  # alpha untouched
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # a lone photo is not copied again

    def _tensor(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (3, 4) or not 1 <= x.shape[-3] <= 4:
            raise DerainError(f"expected a C×H×W or B×C×H×W tensor with C = 1..4, got shape {tuple(x.shape)}")
        return self._channels_first(x[None])[0] if x.ndim == 3 else self._channels_first(x)

    def _array(self, a: np.ndarray) -> np.ndarray:
        if a.ndim == 2:
            batch = a[None, :, :, None]
        elif a.ndim in (3, 4) and 1 <= a.shape[-1] <= 4:
            batch = a if a.ndim == 4 else a[None]
        else:
            raise DerainError(f"expected an image array of shape {_SHAPES}; got {a.shape}")
        out = self._channels_first(torch.from_numpy(np.require(batch, requirements=["C", "W"])).permute(0, 3, 1, 2))
        return out.permute(0, 2, 3, 1).numpy().astype(a.dtype, copy=False).reshape(a.shape)

    def _pil(self, img):
        from derain.photo import array_to_pil, pil_to_array

        pixels, mode = pil_to_array(img)
        out = array_to_pil(self._array(pixels), mode)
        out.info.update(img.info)
        return out
