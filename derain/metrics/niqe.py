"""NIQE, the "completely blind" image quality evaluator of Mittal et al. 2012.

Lower is better. An image is cut into 96x96 patches; each patch gives 18 natural-scene
statistics per scale (two scales, so 36), the patch features are summarised by a multivariate
Gaussian, and the score is its distance to the Gaussian of a pristine model:
sqrt((mu1 - mu2)^T pinv((S1 + S2) / 2) (mu1 - mu2)).

The computation follows the MATLAB release (``computequality.m``, ``estimatemodelparam.m``)
step by step, vectorised over patches; see docs/metrics.md for the details that matter.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate1d, maximum_filter, minimum_filter
from scipy.special import gamma

from derain.errors import DerainError
from derain.metrics.psnr_ssim import gaussian_1d, rgb_to_y

PATCH_SIZE = 96
SHARPNESS_THRESHOLD = 0.75  # pristine fitting keeps patches sharper than this x the image's max
FEATURES_PER_SCALE = 18
N_FEATURES = 2 * FEATURES_PER_SCALE

# MATLAB rgb2gray weights for R, G, B.
_GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])

# Neighbour offsets (rows, cols) of the four pairwise products: H, V, main and anti diagonal.
_PRODUCT_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

# Grid search of the AGGD shape, as in the reference: alpha in 0.2:0.001:10.
_ALPHA_GRID = np.arange(0.2, 10.001, 0.001)
_RHO_GRID = gamma(2 / _ALPHA_GRID) ** 2 / (gamma(1 / _ALPHA_GRID) * gamma(3 / _ALPHA_GRID))


_MSCN_WINDOW = gaussian_1d(7, 7 / 6)  # fspecial('gaussian', 7, 7/6) is its outer product


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    x = np.abs(x)
    return np.where(
        x <= 1,
        1.5 * x**3 - 2.5 * x**2 + 1,
        np.where(x <= 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0.0),
    )


# MATLAB imresize(x, 0.5) (bicubic, antialiased): output pixel j sits at input 2j + 0.5 and
# reads inputs 2j-3 .. 2j+4 with weights cubic(distance / 2), normalised.
_HALF_TAPS = _cubic((np.arange(8) - 3.5) / 2)
_HALF_TAPS /= _HALF_TAPS.sum()


def to_gray(image: np.ndarray, color: str = "gray") -> np.ndarray:
    """The float64 luminance NIQE works on: MATLAB ``rgb2gray`` ("gray") or ``rgb2ycbcr`` Y ("y").

    Both are rounded to integers, like MATLAB on uint8 images. 2-D inputs pass through.
    """
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.dtype != np.uint8:
        raise TypeError(f"NIQE takes uint8 RGB images, got {image.dtype}")
    if color == "y":
        return rgb_to_y(image).astype(np.float64)
    if color == "gray":
        return np.floor(image.astype(np.float64) @ _GRAY_WEIGHTS + 0.5)
    raise ValueError(f"unknown color conversion {color!r}; expected 'gray' or 'y'")


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic with antialiasing) for even-sized 2-D images."""
    for axis in (0, 1):
        padded = np.pad(image, [(3, 3) if a == axis else (0, 0) for a in (0, 1)], mode="symmetric")
        n_out = image.shape[axis] // 2
        image = sum(
            w * padded.take(np.arange(k, k + 2 * n_out, 2), axis=axis)
            for k, w in enumerate(_HALF_TAPS)
        )
    return image


def mscn(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local deviation sigma."""
    def blur(x: np.ndarray) -> np.ndarray:  # imfilter(x, window, 'replicate')
        return correlate1d(correlate1d(x, _MSCN_WINDOW, 0, mode="nearest"), _MSCN_WINDOW, 1, mode="nearest")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    coefficients = (image - mu) / (sigma + 1)
    # In a flat 7x7 neighbourhood image - mu is round-off, whose sign would still sway the AGGD fits.
    flat = maximum_filter(image, 7, mode="nearest") == minimum_filter(image, 7, mode="nearest")
    coefficients[flat] = 0.0
    return coefficients, sigma


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit of each row: shape alpha, left and right scales.

    Rows without negative (or positive) samples give NaN, which the scoring drops.
    """
    negative, positive = samples < 0, samples > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt((samples**2 * negative).sum(1) / negative.sum(1))
        right_std = np.sqrt((samples**2 * positive).sum(1) / positive.sum(1))
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(samples), 1) ** 2 / np.mean(samples**2, 1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = _nearest_alpha(r_hat_norm)
    scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * scale, right_std * scale


def _nearest_alpha(rho: np.ndarray) -> np.ndarray:
    """The grid alpha whose rho is closest (the reference's argmin; the rho grid is increasing)."""
    upper = np.clip(np.searchsorted(_RHO_GRID, rho), 1, len(_RHO_GRID) - 1)
    lower = upper - 1
    pick = np.where(np.abs(_RHO_GRID[upper] - rho) < np.abs(rho - _RHO_GRID[lower]), upper, lower)
    return np.where(np.isnan(rho), np.nan, _ALPHA_GRID[pick])


def patch_features(coefficients: np.ndarray, patch: int) -> np.ndarray:
    """The 18 statistics of every non-overlapping ``patch`` x ``patch`` block of an MSCN map.

    Per block: AGGD shape and mean scale of the coefficients (the reference's GGD features),
    then shape, mean, left and right scale of the products with 4 neighbours (circular shift
    inside the block, as MATLAB ``circshift``).
    """
    rows, cols = coefficients.shape[0] // patch, coefficients.shape[1] // patch
    blocks = (
        coefficients[: rows * patch, : cols * patch]
        .reshape(rows, patch, cols, patch)
        .transpose(0, 2, 1, 3)
        .reshape(-1, patch, patch)
    )
    alpha, beta_l, beta_r = fit_aggd(blocks.reshape(len(blocks), -1))
    columns = [alpha, (beta_l + beta_r) / 2]
    for shift in _PRODUCT_SHIFTS:
        products = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r = fit_aggd(products.reshape(len(blocks), -1))
        mean = (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha)
        columns += [alpha, mean, beta_l, beta_r]
    return np.stack(columns, axis=1)


def niqe_features(gray: np.ndarray, patch: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Features (n_patches x 36) and sharpness (mean sigma, n_patches) of a 2-D float image.

    The image is cropped to whole patches; the second scale is the MATLAB-bicubic half-size
    image, cut into half-size patches so that both scales describe the same regions.
    """
    rows, cols = gray.shape[0] // patch, gray.shape[1] // patch
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {patch}x{patch}, got {gray.shape[:2]}")
    image = gray[: rows * patch, : cols * patch].astype(np.float64)
    coefficients, sigma = mscn(image)
    sharpness = sigma.reshape(rows, patch, cols, patch).mean(axis=(1, 3)).ravel()
    fine = patch_features(coefficients, patch)
    coarse = patch_features(mscn(imresize_half(image))[0], patch // 2)
    return np.concatenate([fine, coarse], axis=1), sharpness


@dataclass(frozen=True, eq=False)
class NIQEModel:
    """A multivariate Gaussian of patch features: the pristine model NIQE measures against."""

    mean: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)

    def score(self, image: np.ndarray, color: str = "gray") -> float:
        """NIQE of a uint8 RGB (or 2-D gray) image; lower means more natural."""
        features, _ = niqe_features(to_gray(image, color))
        return self.distance(features)

    def distance(self, features: np.ndarray) -> float:
        """sqrt((mu1 - mu2)^T pinv((S1 + S2) / 2) (mu1 - mu2)) to the Gaussian of ``features``."""
        mean, cov = gaussian_of(features)
        diff = self.mean - mean
        return float(np.sqrt(diff @ np.linalg.pinv((self.cov + cov) / 2) @ diff))

    def save(self, path: str | Path, **metadata) -> None:
        """Write the BasicSR-style npz (``mu_pris_param``, ``cov_pris_param``)."""
        np.savez(path, mu_pris_param=self.mean, cov_pris_param=self.cov, **metadata)


def gaussian_of(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``nanmean`` and ``nancov``: mean ignoring NaNs, covariance of NaN-free rows."""
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:  # one observation has zero (co)variance
        return np.nanmean(features, axis=0), np.zeros((features.shape[1],) * 2)
    return np.nanmean(features, axis=0), np.cov(complete, rowvar=False)


def fit_niqe_model(images: Iterable[np.ndarray], color: str = "gray") -> NIQEModel:
    """Fit a pristine model to clean images, keeping each image's sharp patches only."""
    kept = []
    for image in images:
        features, sharpness = niqe_features(to_gray(image, color))
        kept.append(features[sharpness > SHARPNESS_THRESHOLD * sharpness.max()])
    if not kept:
        raise ValueError("no images to fit a NIQE model to")
    features = np.concatenate(kept)
    if len(features) <= N_FEATURES:
        raise ValueError(f"{len(features)} sharp patches are too few for a {N_FEATURES}-d Gaussian")
    return NIQEModel(*gaussian_of(features))


def load_niqe_params(path: str | Path) -> NIQEModel:
    """Load a pristine model: MATLAB ``modelparameters.mat`` or a BasicSR-style npz."""
    path = Path(path)
    keys = ("mu_prisparam", "cov_prisparam") if path.suffix == ".mat" else ("mu_pris_param", "cov_pris_param")
    try:
        if path.suffix == ".mat":
            from scipy.io import loadmat

            params = loadmat(path)
        else:
            params = dict(np.load(path))
    except (OSError, ValueError) as exc:
        raise DerainError(f"{path}: cannot read NIQE parameters ({exc})") from exc
    missing = [key for key in keys if key not in params]
    if missing:
        raise DerainError(f"{path}: not a NIQE parameter file (missing {', '.join(missing)})")
    mean = np.asarray(params[keys[0]], dtype=np.float64).ravel()
    cov = np.asarray(params[keys[1]], dtype=np.float64)
    if mean.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES):
        raise DerainError(f"{path}: expected a {N_FEATURES}-d mean and covariance, got {mean.shape} and {cov.shape}")
    return NIQEModel(mean, cov)


@functools.lru_cache(maxsize=1)
def bundled_model() -> NIQEModel:
    """The pristine model shipped with derain (see derain/assets/README.md)."""
    with resources.as_file(resources.files("derain") / "assets" / "niqe_pristine.npz") as path:
        return load_niqe_params(path)


def niqe(image: np.ndarray, model: NIQEModel | None = None, color: str = "gray") -> float:
    """NIQE of a uint8 RGB image against ``model`` (default: the bundled pristine model)."""
    return (model or bundled_model()).score(image, color)
