"""Image quality metrics: full-reference PSNR/SSIM and no-reference NIQE (docs/metrics.md)."""
from derain.metrics.niqe import NIQEModel, bundled_model, fit_niqe_model, load_niqe_params, niqe, niqe_features
from derain.metrics.psnr_ssim import PROTOCOLS, PSNR_CAP_DB, brightness, mean_psnr, psnr, rgb_to_y, ssim

__all__ = [
    "PROTOCOLS",
    "PSNR_CAP_DB",
    "NIQEModel",
    "brightness",
    "bundled_model",
    "fit_niqe_model",
    "load_niqe_params",
    "mean_psnr",
    "niqe",
    "niqe_features",
    "psnr",
    "rgb_to_y",
    "ssim",
]
