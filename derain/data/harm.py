"""Harm maps: a model's change on each clean training photo, where it should change nothing.

A no-rain training crop can be picked where the model errs most (`RainMixDataset(harmed_negatives=N)`):
hard-negative mining, offline. `scripts/harm_maps.py` writes the maps; photos are keyed by the SHA-1 of
their file, so a map file follows its photos to another machine or folder.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from derain.atomic import atomic_write
from derain.errors import DerainError


def photo_key(path: str | Path) -> str:
    """The SHA-1 of a photo's file: its name in a harm-map file."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def change_map(derain: Callable[[np.ndarray], np.ndarray], photo: np.ndarray) -> np.ndarray:
    """A uint8 H×W photo's largest change over R, G and B, in grey levels, by `derain` (uint8 in, uint8 out)."""
    out = derain(photo)
    return np.abs(out.astype(np.int16) - photo.astype(np.int16)).max(axis=2).astype(np.uint8)


def save_harm_maps(path: str | Path, maps: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file, so numpy adds no ".npz" to the temporary name
            np.savez_compressed(f, **maps)

    atomic_write(path, write)


def load_harm_maps(path: str | Path) -> dict[str, np.ndarray]:
    try:
        f = np.load(path)  # no pickles: allow_pickle is off
    except (OSError, ValueError) as exc:
        raise DerainError(f"{path}: not a harm-map file ({exc})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DerainError(f"{path}: not a harm-map file (one array, not an .npz of maps)")
    with f:
        return {key: f[key] for key in f.files}


def harm_for(files: Sequence[Path], maps: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each photo's map, refusing a photo the maps lack."""
    keys = [photo_key(f) for f in files]
    missing = [str(f) for f, k in zip(files, keys) if k not in maps]
    if missing:
        raise DerainError(f"the harm maps lack {len(missing)} of the {len(files)} training photos (first: "
                          f"{missing[0]}); make them again with scripts/harm_maps.py")
    return [maps[k] for k in keys]
