"""Real rain, harvested: the streak layer of real rainy photos, put on clean crops (the `real` rain family).

Synthetic streaks are sharp-edged and uniform; real ones are soft, uneven, of every width and length,
and a model trained on synthetic rain alone leaves most of them. `rain_layer` lifts the streaks off a
real photo with two grey-scale morphology steps, after turning the photo so the rain runs vertically
(its angle is the one `derain.metrics.streaks` finds):

    top-hat   photo − its opening by a horizontal line ACROSS px long: bright things narrower than that
    opening   of the top-hat by a vertical line ALONG px long: only those at least that long, along the rain

What is left is the light each streak adds over its surroundings, in grey levels. Thin bright scene
lines along the rain (poles, mullions) come with it, and a veil or drops do not. Short dashes (the
dense rain of sirr100's 101 and 131) are shorter than ALONG and are left out too, unless the bank
is also harvested at a shorter length (`along`, e.g. [9, 15]: one layer per photo and length).
`longest` drops what is at least that long as well (a third opening, subtracted): most of the scene's
poles, mullions and glints along the rain, and the longest streaks with them.
`RainBank` holds the layers of a set of photos and draws crops of them, rescaled, mirrored, optionally
turned and scaled in strength; `add_bank_rain` adds one to a clean image.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from derain.console import progress_bar
from derain.data.layouts import list_images
from derain.data.synthesis import draw_param
from derain.errors import DerainError
from derain.imageio import read_image_uint8
from derain.metrics.psnr_ssim import rgb_to_y
from derain.metrics.streaks import ANGLES, orientation_energy, rain_angle_index

ACROSS = 9  # px: streaks narrower than this, across the rain
ALONG = 15  # px: and at least this long, along it
DEFAULTS = {
    "gain": (1.0, 2.5),  # the harvested layer's strength: a top-hat misses the streak's soft skirt
    "scale": (0.7, 1.4),  # resize of the layer: streak width and length
    "angle": 0,  # degrees the layer is turned by (rain_angle's sense): 0 keeps each photo's own rain angle
    "along": ALONG,  # px, or a list: the lengths the layers are harvested at (fixed when the bank is built)
    "longest": None,  # px: lines at least this long are left out (fixed when the bank is built); None keeps all
}


def rain_angle(img: np.ndarray) -> float:
    """The rain's angle in degrees from vertical (positive leans the top to the right, like /)."""
    return float(ANGLES[rain_angle_index(orientation_energy(img))])


def rain_layer(img: np.ndarray, angle: float | None = None, along: int = ALONG,
               longest: int | None = None) -> np.ndarray:
    """The streak layer of a uint8 H×W×3 photo: H×W float32, the grey levels each streak at least `along`
    px long (and, given `longest`, shorter than that) adds."""
    angle = rain_angle(img) if angle is None else angle
    y = rgb_to_y(img).astype(np.float32)
    if angle == 0:  # upright already: both turns would be the identity (most real photos; 0.25 s at 2 MP)
        return np.clip(line_streaks(y, along, longest), 0, 255)
    upright = ndimage.rotate(y, angle, reshape=True, order=1, mode="reflect")  # rain now vertical
    back = ndimage.rotate(line_streaks(upright, along, longest), -angle, reshape=False, order=1)
    top, left = (back.shape[0] - y.shape[0]) // 2, (back.shape[1] - y.shape[1]) // 2
    return np.clip(back[top:top + y.shape[0], left:left + y.shape[1]], 0, 255)


def line_streaks(upright: np.ndarray, along: int, longest: int | None) -> np.ndarray:
    """The two morphology steps on a Y image whose rain runs vertically (the module's docstring)."""
    tophat = upright - ndimage.grey_opening(upright, size=(1, ACROSS))
    streaks = ndimage.grey_opening(tophat, size=(along, 1))
    if longest is not None:
        streaks -= ndimage.grey_opening(tophat, size=(longest, 1))
    return streaks


def bank_photos(paths: Sequence[str | Path]) -> list[Path]:
    """The photos named by `paths` (files, or folders read non-recursively), sorted, without repeats."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(list_images(p))
        elif p.is_file():
            found.add(p)
        else:
            raise DerainError(f"{p}: rain bank photo not found")
    if not found:
        raise DerainError(f"no photos in the rain bank {[str(p) for p in paths]}")
    return sorted(found)


def longest_length(longest: int | None, along: Sequence[int]) -> int | None:
    """`longest` checked: None, or a length in px longer than every harvest length."""
    if longest is not None and (not isinstance(longest, (int, np.integer)) or isinstance(longest, bool)
                                or longest <= max(along)):
        raise DerainError(f"real rain: longest must be a length in px above along {list(along)}, or null; got {longest!r}")
    return None if longest is None else int(longest)


def harvest_lengths(along: int | Sequence[int]) -> tuple[int, ...]:
    """`along` as a sorted tuple of distinct lengths in px, each at least 1."""
    lengths = (along,) if isinstance(along, (int, np.integer)) else tuple(along)
    if not lengths or any(not isinstance(a, (int, np.integer)) or isinstance(a, bool) or a < 1 for a in lengths):
        raise DerainError(f"real rain: along must be a length in px or a list of them, each at least 1; got {along!r}")
    return tuple(sorted(set(int(a) for a in lengths)))


class RainBank:
    """The streak layers of real rainy photos (float16, in memory), one per photo and harvest length
    `along`, without lines `longest` px long or more, and random crops of them."""

    def __init__(self, paths: Sequence[str | Path], along: int | Sequence[int] = ALONG, longest: int | None = None):
        self.photos = bank_photos(paths)
        self.along = harvest_lengths(along)
        self.longest = longest_length(longest, self.along)
        self.layers = []
        for p in progress_bar(self.photos, desc="rain bank", unit="photo"):
            img = read_image_uint8(p)
            angle = rain_angle(img)
            self.layers += [rain_layer(img, angle, a, self.longest).astype(np.float16) for a in self.along]

    def draw(self, shape: tuple[int, int], rng: np.random.Generator, scale: float = 1.0,
             angle: float = 0.0) -> np.ndarray:
        """An H×W crop in [0, 1] of a random layer resized by `scale`, mirrored half the time, and turned
        by `angle` degrees (positive leans the streaks' tops further right, as rain_angle measures)."""
        h, w = shape
        if angle:  # turn a square around the crop that still covers it once turned
            side = int(np.ceil(np.hypot(h, w))) + 2
            turned = ndimage.rotate(self.draw((side, side), rng, scale), -angle, reshape=False, order=1)
            top, left = (side - h) // 2, (side - w) // 2
            return np.clip(turned[top:top + h, left:left + w], 0.0, None)
        layer = self.layers[int(rng.integers(len(self.layers)))]
        need = max(h / layer.shape[0], w / layer.shape[1])  # a layer smaller than the crop is enlarged
        s = max(scale, need * 1.001)
        ch, cw = min(layer.shape[0], int(np.ceil(h / s)) + 2), min(layer.shape[1], int(np.ceil(w / s)) + 2)
        top, left = int(rng.integers(layer.shape[0] - ch + 1)), int(rng.integers(layer.shape[1] - cw + 1))
        crop = ndimage.zoom(layer[top:top + ch, left:left + cw].astype(np.float32), s, order=1)[:h, :w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return crop / 255.0


def add_bank_rain(clean: np.ndarray, bank: RainBank, rng: np.random.Generator,
                  **params) -> tuple[np.ndarray, dict]:
    """A crop of the bank's rain on an H×W×3 float image in [0, 1]: (rainy float32, parameters drawn)."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise DerainError(f"unknown real rain parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if harvest_lengths(p["along"]) != bank.along:
        raise DerainError(f"real rain: along {p['along']!r} differs from the bank's {list(bank.along)}; "
                          "build the bank with it (families.bank_for)")
    if p["longest"] != bank.longest:
        raise DerainError(f"real rain: longest {p['longest']!r} differs from the bank's {bank.longest!r}; "
                          "build the bank with it (families.bank_for)")
    gain, scale = draw_param("gain", p["gain"], rng), draw_param("scale", p["scale"], rng)
    angle = draw_param("angle", p["angle"], rng)  # a fixed 0 draws nothing: streams stay as they were
    layer = bank.draw(clean.shape[:2], rng, scale, angle)
    rainy = np.clip(np.asarray(clean, dtype=np.float64) + gain * layer[..., None], 0.0, 1.0)
    meta = {"model": "bank", "gain": gain, "scale": scale, **({"angle": angle} if angle else {})}
    return rainy.astype(np.float32), meta
