"""PSNR and SSIM in the two protocols that deraining papers report.

``"y"`` is the MATLAB protocol of the deraining literature (Restormer, MPRNet, DGUNet,
DRSformer): uint8 images, the Y channel of MATLAB ``rgb2ycbcr`` (limited range) rounded back
to uint8, no border crop, SSIM of Wang et al. 2004 over the 'valid' region.
``"rgb"`` scores the three colour channels: PSNR over all of them at once, SSIM as the mean of
the per-channel SSIMs. See docs/metrics.md.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PROTOCOLS = ("y", "rgb")

# MATLAB rgb2ycbcr, Y row: offset 16 and weights for R, G, B in [0, 1].
_Y_OFFSET = 16.0
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])

# Wang et al. 2004: 11x11 Gaussian window with sigma 1.5, K = (0.01, 0.03), L = 255.
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for a uint8 HxWx3 RGB image, rounded to uint8 like MATLAB."""
    _check_uint8(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    y = _Y_OFFSET + image.astype(np.float64) @ (Y_WEIGHTS / 255.0)
    return np.floor(y + 0.5).astype(np.uint8)  # MATLAB rounds halves away from zero


def brightness(image: np.ndarray) -> float:
    """Mean MATLAB-Y level of a uint8 RGB image, in grey levels."""
    return float(rgb_to_y(image).mean())


def psnr(pred: np.ndarray, target: np.ndarray, protocol: str = "y") -> float:
    """Peak signal-to-noise ratio in dB, 20·log10(255 / RMSE); ``inf`` for identical images."""
    a, b = _channels(pred, target, protocol)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(255.0 / np.sqrt(mse)))


PSNR_CAP_DB = 100.0  # an identical pair's inf, when PSNRs are averaged


def mean_psnr(values: list[float]) -> float:
    """The mean of per-image PSNRs, each capped at PSNR_CAP_DB, so that one identical pair (a clean photo
    returned unchanged) does not make the mean infinite."""
    return float(np.mean(np.minimum(values, PSNR_CAP_DB)))


def ssim(pred: np.ndarray, target: np.ndarray, protocol: str = "y") -> float:
    """Structural similarity (Wang et al. 2004), mean over the 'valid' region and channels."""
    a, b = _channels(pred, target, protocol)
    if min(a.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}")
    return float(np.mean([ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[2])]))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two 2-D float images over the 'valid' region (shape shrinks by 10)."""
    mu_a, mu_b = _filter_valid(a), _filter_valid(b)
    var_a = _filter_valid(a * a) - mu_a**2
    var_b = _filter_valid(b * b) - mu_b**2
    cov_ab = _filter_valid(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + _C1) * (2 * cov_ab + _C2)) / (
        (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    )


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian; its outer product is MATLAB ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


_WINDOW_1D = gaussian_1d(_SSIM_WINDOW, _SSIM_SIGMA)


def _filter_valid(image: np.ndarray) -> np.ndarray:
    """MATLAB ``filter2(window, image, 'valid')`` with the separable SSIM Gaussian."""
    rows = sliding_window_view(image, _SSIM_WINDOW, axis=0) @ _WINDOW_1D
    return sliding_window_view(rows, _SSIM_WINDOW, axis=1) @ _WINDOW_1D


def _channels(pred: np.ndarray, target: np.ndarray, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The float64 HxWxC planes a protocol compares."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    _check_uint8(pred)
    _check_uint8(target)
    if pred.shape != target.shape:
        raise ValueError(f"image shapes differ: {pred.shape} vs {target.shape}")
    if pred.ndim == 2:  # already a single channel (gray or Y)
        planes = pred[..., None], target[..., None]
    elif protocol == "y":
        planes = rgb_to_y(pred)[..., None], rgb_to_y(target)[..., None]
    else:
        planes = pred, target
    return planes[0].astype(np.float64), planes[1].astype(np.float64)


def _check_uint8(image: np.ndarray) -> None:
    if image.dtype != np.uint8:
        raise TypeError(f"metrics take uint8 images (quantise first), got {image.dtype}")
