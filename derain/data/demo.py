"""A small offline dataset built from the photos that scikit-image ships, for demos and smoke tests.

`build(root)` writes three sets of size×size crops of those photos:

- `root/clean/`: clear images (T_recog's rain-free class, T_recon's targets);
- `root/rainy/`: other crops with `camera`-model rain, saved as JPEG: unpaired "real-like" rain;
- `root/paired/{rainy,clean}/`: further crops with `linear`-model rain, in the paired layout.

The three sets use different random crops and flips, so no clean image is the background of a
rainy one. A second call with the same arguments finds `root/demo.json` and returns at once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from derain.data.augment import random_crop, random_dihedral
from derain.data.synthesis import prepare_output, rainy_suffix, save_pair, synthesize, write_manifest
from derain.errors import DerainError
from derain.imageio import write_image

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "motorcycle")
MANIFEST = "demo.json"
VERSION = 1  # bump when the output for the same arguments changes


def load_photo(name: str) -> np.ndarray:
    """One of the bundled scikit-image photos as H×W×3 uint8 (no download needed)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _crops(photos: list[np.ndarray], count: int, size: int, seed: int, stream: int):
    """`count` (name, crop) items cycling over the photos; each set has its own random stream."""
    for i in range(count):
        rng = np.random.default_rng([seed, stream, i])
        photo = photos[i % len(photos)]
        (crop,) = random_dihedral(random_crop([photo], size, rng), rng)
        yield f"{i:03d}_{PHOTOS[i % len(PHOTOS)]}", np.ascontiguousarray(crop), rng


def build(root: str | Path, seed: int = 0, size: int = 256, n_clean: int = 12, n_rainy: int = 12,
          n_pairs: int = 12) -> dict[str, Path]:
    """Write (or reuse) the demo sets under `root`; returns {"clean", "rainy", "paired"} folder paths."""
    root = Path(root)
    settings = {"version": VERSION, "seed": seed, "size": size, "n_clean": n_clean, "n_rainy": n_rainy,
                "n_pairs": n_pairs}
    if min(size, n_clean, n_rainy, n_pairs) < 1:
        raise DerainError(f"demo.build: size and counts must be at least 1, got {settings}")
    paths = {"clean": root / "clean", "rainy": root / "rainy", "paired": root / "paired"}
    if _built_with(root, settings):
        return paths
    prepare_output(root, MANIFEST)
    photos = [load_photo(name) for name in PHOTOS]
    files, pairs = [], []
    for name, crop, _ in _crops(photos, n_clean, size, seed, stream=0):
        write_image(paths["clean"] / f"{name}.png", crop)
        files.append(f"clean/{name}.png")
    for name, crop, rng in _crops(photos, n_rainy, size, seed, stream=1):
        rainy, meta = synthesize(crop / 255.0, "camera", rng)
        write_image(paths["rainy"] / f"{name}{rainy_suffix(meta)}", rainy, quality=meta["jpeg_quality"])
        files.append(f"rainy/{name}{rainy_suffix(meta)}")
    for name, crop, rng in _crops(photos, n_pairs, size, seed, stream=2):
        rainy, meta = synthesize(crop / 255.0, "linear", rng)
        entry = save_pair(paths["paired"], name, crop, rainy, meta)
        pairs.append(entry)
        files += [f"paired/rainy/{entry['rainy']}", f"paired/clean/{entry['clean']}"]
    write_manifest(root / MANIFEST, {"settings": settings, "photos": list(PHOTOS)}, pairs, files)
    return paths


def _built_with(root: Path, settings: dict) -> bool:
    """True if `root` holds a complete demo built with exactly these settings."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
        return recorded["settings"] == settings and all((root / f).is_file() for f in recorded["files"])
    except (ValueError, KeyError, TypeError):
        return False
