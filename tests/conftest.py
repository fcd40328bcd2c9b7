"""Shared fixtures: small generated images written to tmp_path, and the optional shared data folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The repo's sibling `shared/data`, or a skip saying why."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared image data not found at {SHARED_DATA.resolve()} (the repo root's sibling shared/data)")
    return SHARED_DATA


def scene(size: int | tuple[int, int] = 64, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like H×W×3 float32 image in [0, 1]: colour ramps plus blurred noise."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.5 - 0.3 * x * y], axis=2)
    texture = gaussian_filter(rng.standard_normal((h, w, 3)), (3, 3, 0)) * 0.3
    return np.clip(base + texture, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A model directory holding the `tiny` preset with seed-0 random weights."""
    from derain.archs import create_model
    from derain.hub import save_pretrained

    torch.manual_seed(0)
    return str(save_pretrained(create_model("tiny"), tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture
def make_scene():
    """make_scene(size, seed=0): the photo-like test image as an array."""
    return scene


@pytest.fixture
def make_image():
    """make_image(path, size=(h, w) or int, seed=0, mode="RGB", array=None) writes an image and returns its path."""

    def make(path, size=32, seed=0, mode="RGB", array=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if array is None:
            array = np.round(scene(size, seed) * 255).astype(np.uint8)
        img = Image.fromarray(np.asarray(array))
        if mode != img.mode:
            img = img.convert(mode)
        img.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else img.save(path)
        return path

    return make


@pytest.fixture
def no_pillow_heif(monkeypatch):
    """derain as on a machine without pillow-heif: its import fails, and derain's check is run afresh."""
    import sys

    from derain.imageio import heif_registered

    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    heif_registered.cache_clear()
    yield
    heif_registered.cache_clear()
