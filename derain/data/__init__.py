"""The data layer: dataset layouts, torch datasets, degradations and rain synthesis.

Layout functions load eagerly; the torch-based names (datasets, `gradients`, blur) load on first
use, so that tools which only read or synthesise images start without importing torch.
"""
from __future__ import annotations

import importlib

from derain.data.layouts import LAYOUTS, Pair, detect_layout, list_images, list_pairs, load_pair, load_pair_uint8

_LAZY = {
    "gradients": "degradations",
    "gaussian_blur": "degradations",
    "gaussian_kernel_size": "degradations",
    "RandomBlur": "degradations",
    "PairedDataset": "datasets",
    "UnpairedDataset": "datasets",
    "BlurDataset": "datasets",
    "RainMixDataset": "datasets",
    "SyntheticRainyDataset": "datasets",
    "RAINY_LABEL": "datasets",
    "CLEAR_LABEL": "datasets",
}

__all__ = ["LAYOUTS", "Pair", "detect_layout", "list_images", "list_pairs", "load_pair", "load_pair_uint8",
           *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"derain.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'derain.data' has no attribute {name!r}")
