"""Rain families and the family mixer: what the fine-tuning pairs, V2 and the validation suite draw from.

Each family is a synthesis model with parameter ranges (docs/datasets.md, "Rain families"):

    light      one thin, sparse layer of linear streaks (Rain100L-like)
    heavy      3-5 denser, wider layers at one angle (Rain100H-like)
    photoshop  noise, Levels, Motion Blur and Screen (DDN / Rain1400-like)
    haze       moderate streaks over a veil of airlight
    camera     streaks, veil and sensor noise through a camera's tone curve, then JPEG
    dense      2-4 dense layers of long, faint, semi-transparent streaks (real downpours, as in sirr100)
    wind       light to moderate streaks blown 35-70 degrees from vertical, leaning either way
    drizzle    2-4 dense layers of short, thin, faint dashes (fine rain, as in sirr100's 124)
    real       streaks harvested from real rainy photos (derain.data.rain_bank); needs a bank of such photos
    none       no rain: the clean photo itself, so the model learns to leave clean photos alone

`mix_rain` draws a family by weight and then its parameters, so no two crops share their rain.
`detail_energy` ranks candidate crops, so no-rain crops can be the line-rich ones the model must keep.
`holdout` splits a list of photos by a hash of their names, keeping near-duplicates on the training side:
the validation photos never change with the order or number of the others, and are never trained on in
any copy.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from derain.data import rain_bank
from derain.data.duplicates import duplicate_groups
from derain.data.synthesis import DEFAULTS as SYNTH_DEFAULTS, synthesize
from derain.errors import DerainError

FAMILIES: dict[str, tuple[str | None, dict]] = {
    "light": ("linear", {"layers": 1, "density": (0.008, 0.03), "width": (1.0, 2.0), "length": (10.0, 40.0),
                         "brightness": (0.4, 0.9)}),
    "heavy": ("linear", {"layers": (3, 5), "density": (0.03, 0.08), "width": (1.0, 3.0), "length": (20.0, 60.0),
                         "brightness": (0.5, 1.0), "angle_jitter": 8.0}),
    "photoshop": ("photoshop", {}),
    "haze": ("linear", {"layers": (1, 3), "density": (0.01, 0.04), "veil": (0.1, 0.35), "sheet": (0.0, 0.12)}),
    "camera": ("camera", {}),
    "dense": ("linear", {"layers": (2, 4), "density": (0.08, 0.3), "width": (1.5, 4.0), "length": (30.0, 120.0),
                         "brightness": (0.1, 0.4), "angle_jitter": 6.0}),
    "wind": ("linear", {"angle": (35.0, 70.0)}),
    "real": ("bank", {}),
    "none": (None, {}),
    # last, so the suite's earlier families keep their seeds (derain.suite draws family f's image i from [seed, f, i])
    "drizzle": ("linear", {"layers": (2, 4), "density": (0.1, 0.3), "width": (0.7, 1.2), "length": (3.0, 10.0),
                           "brightness": (0.1, 0.35), "angle_jitter": 6.0}),
}
NEEDS_BANK = "the 'real' rain family needs a bank of real rainy photos (data.synth.bank, --bank)"
# what needs nothing but a clean photo: the validation suite's families
SYNTHETIC_FAMILIES = tuple(f for f, (model, _) in FAMILIES.items() if model != "bank")
# a quarter without rain, and little haze: a veil the model cannot tell from the scene teaches it to darken
TRAIN_WEIGHTS = {"light": 0.25, "heavy": 0.15, "photoshop": 0.2, "haze": 0.05, "camera": 0.1, "none": 0.25}
HOLDOUT_SHARE = 0.15  # of the clean photos: the validation suite's, never trained on
MIRRORED = ("wind",)  # families whose angle range is one side's: each image leans either way


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """An H×W×3 float image in [0, 1] as it reads back after saving as JPEG at `quality`."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0


def add_family_rain(clean: np.ndarray, family: str, rng: np.random.Generator,
                    overrides: Mapping[str, Mapping] | None = None,
                    bank: rain_bank.RainBank | None = None) -> tuple[np.ndarray, dict]:
    """Rain of one family on an H×W×3 float image in [0, 1]: (rainy float32, parameters drawn).
    `overrides` maps a family to parameter ranges that replace its own (check_overrides); the `real`
    family draws its streaks from `bank`."""
    if family not in FAMILIES:
        raise DerainError(f"unknown rain family {family!r}; choose from {', '.join(FAMILIES)}")
    model, params = FAMILIES[family]
    if model is None:
        return np.asarray(clean, dtype=np.float32).copy(), {"family": family}
    params = {**params, **(overrides or {}).get(family, {})}
    if family in MIRRORED and rng.random() < 0.5:
        low, high = (params["angle"], params["angle"]) if np.isscalar(params["angle"]) else params["angle"]
        params["angle"] = (-high, -low)
    if model == "bank":
        if bank is None:
            raise DerainError(NEEDS_BANK)
        rainy, meta = rain_bank.add_bank_rain(clean, bank, rng, **params)
        return rainy, {"family": family, **meta}
    rainy, meta = synthesize(clean, model, rng, **params)
    if "jpeg_quality" in meta:  # applied here, so the pair is saved losslessly afterwards
        meta["jpeg_applied"] = meta.pop("jpeg_quality")
        rainy = jpeg_round_trip(rainy, meta["jpeg_applied"])
    return rainy, {"family": family, **meta}


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(FAMILIES))
    if unknown:
        raise DerainError(f"rain families: unknown {unknown}; the families are {', '.join(FAMILIES)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise DerainError(f"rain family weights must be non-negative with a positive sum, got {dict(weights)}")
    return {k: float(v) for k, v in weights.items()}


def check_overrides(overrides: Mapping[str, Mapping]) -> dict[str, dict]:
    """Per-family parameter ranges, e.g. {"heavy": {"brightness": [0.1, 1.0]}}: each name must be one of the
    family's rain model's parameters (derain.data.synthesis.DEFAULTS)."""
    for family, params in overrides.items():
        model = FAMILIES.get(family, (None, None))[0]
        if model is None:
            raise DerainError(f"rain family overrides: {family!r} has no parameters; "
                              f"the families with rain are {', '.join(f for f, (m, _) in FAMILIES.items() if m)}")
        if not isinstance(params, Mapping):
            raise DerainError(f"rain family overrides: {family}: expected a mapping of parameter ranges, got {params!r}")
        known = rain_bank.DEFAULTS if model == "bank" else SYNTH_DEFAULTS[model]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise DerainError(f"rain family overrides: {family} ({model} rain) has no parameter(s) {unknown}; "
                              f"known: {sorted(known)}")
    return {family: dict(params) for family, params in overrides.items()}


def bank_for(weights: Mapping[str, float], photos: Sequence[str | Path],
             overrides: Mapping[str, Mapping] | None = None) -> rain_bank.RainBank | None:
    """The rain bank of `photos` if `weights` draw the `real` family, else None (no photo is read), its
    layers harvested at the `along` and `longest` lengths of the real family's `overrides` (rain_bank.DEFAULTS)."""
    if weights.get("real", 0) <= 0:
        return None
    if not photos:
        raise DerainError(NEEDS_BANK)
    harvest = {**rain_bank.DEFAULTS, **(overrides or {}).get("real", {})}
    return rain_bank.RainBank(photos, harvest["along"], harvest["longest"])


def draw_family(rng: np.random.Generator, weights: Mapping[str, float] = TRAIN_WEIGHTS) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def mix_rain(clean: np.ndarray, rng: np.random.Generator, weights: Mapping[str, float] = TRAIN_WEIGHTS,
             bank: rain_bank.RainBank | None = None) -> tuple[np.ndarray, dict]:
    """Rain of a family drawn by `weights`, with that family's parameters drawn too."""
    return add_family_rain(clean, draw_family(rng, weights), rng, bank=bank)


def _luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H×W×3 image, in its own scale."""
    return np.asarray(img, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def detail_energy(img: np.ndarray) -> float:
    """Mean squared difference between an image's luma and its 5×5 box mean: thin lines and edges score high."""
    luma = _luma(img)
    return float(np.mean((luma - uniform_filter(luma, 5, mode="reflect")) ** 2))


def aligned_line_energy(img: np.ndarray) -> float:
    """Mean square of the bright thin lines that run within about 30° of vertical, as rain does: the luma's
    excess over its 1×5 horizontal box mean (bright, narrower than 5 px across), averaged over 9 px
    down each column (long along the rain). Dots and horizontal lines score near zero."""
    luma = _luma(img)
    bright = np.maximum(luma - uniform_filter(luma, (1, 5), mode="reflect"), 0.0)
    return float(np.mean(uniform_filter(bright, (9, 1), mode="reflect") ** 2))


def in_holdout(key: str, share: float) -> bool:
    """Whether a photo with this key (its name, or path under the root) hashes into the held-out share."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def holdout(files: Sequence[Path], root: Path | None = None,
            share: float = HOLDOUT_SHARE) -> tuple[list[Path], list[Path]]:
    """(train, validation) by a hash of each file's path relative to `root` (its name if None). A photo is
    held out only if all its near-duplicates (`duplicates.duplicate_groups`) hash into the held-out share
    too, so no copy of a validation photo is trained on."""
    def held_out(f: Path) -> bool:
        return in_holdout((f.relative_to(root) if root else Path(f.name)).as_posix(), share)

    val = {f for group in duplicate_groups(files) if all(map(held_out, group)) for f in group} if share else set()
    return [f for f in files if f not in val], [f for f in files if f in val]
