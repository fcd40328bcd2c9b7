"""Crops, padding and flips/rotations on H×W×C numpy arrays, the same for aligned images.

Images that hold rain get only `random_flip`: a 90° turn lays the streaks horizontal, which real rain never is."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an H×W×C array, centred, so that both sides are at least `size`."""
    pad_h, pad_w = max(size - img.shape[0], 0), max(size - img.shape[1], 0)
    if not (pad_h or pad_w):
        return img
    return np.pad(img, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
                  mode="reflect")


def crop_window(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random size×size window inside height×width (which must be large enough)."""
    return int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))


def random_crop(images: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random size×size window of each image (all of one size); small images are padded first."""
    images = [pad_to(img, size) for img in images]
    top, left = crop_window(*images[0].shape[:2], size, rng)
    return [img[top:top + size, left:left + size] for img in images]


def random_dihedral(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One of the 8 flips and 90° rotations, the same for each image."""
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    images = [np.rot90(img, turns) for img in images]
    return [img[:, ::-1] for img in images] if flip else images


def random_flip(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One of the 4 flips that keep a vertical line vertical (none, left-right, up-down, both), the same
    for each image."""
    lr, ud = bool(rng.integers(2)), bool(rng.integers(2))
    return [img[::-1 if ud else 1, ::-1 if lr else 1] for img in images]
