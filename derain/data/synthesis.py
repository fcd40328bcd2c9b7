"""Rain synthesis: streak layers, and two ways to put them on a clean photo.

A streak layer scatters seeds at random, then draws each as a soft line segment (one FFT
convolution with a line kernel). `linear` adds or screens the layers onto the sRGB image and
clips, as Rain100L and Rain1200 do. `photoshop` follows the common Photoshop tutorial behind DDN's
Rain1400: Gaussian noise, a slight blur, Levels that keep only the brightest specks, Motion Blur at
the rain angle, then a Screen blend at partial opacity. `camera` follows the imaging chain that the paper blames for
the gap between synthetic and real rain: it undoes the camera's tone curve, blends defocused
streaks and a scattering veil into linear radiance, adds shot and read noise, re-applies the
curve, and is saved as a JPEG.

Every parameter is a number (fixed) or a (low, high) range drawn per image; `DEFAULTS` lists them.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from scipy.signal import fftconvolve
from derain.console import progress_bar
from derain.data.augment import random_crop
from derain.data.layouts import list_images
from derain.errors import DerainError
from derain.imageio import read_image_uint8, write_image

MODELS = ("linear", "photoshop", "camera")

_STREAKS = {
    "layers": (1, 3),  # number of streak layers, each with its own length, width, brightness
    "density": (0.01, 0.04),  # fraction of the image the streaks cover, shared by the layers
    "length": (15.0, 50.0),  # pixels
    "angle": (-30.0, 30.0),  # degrees from vertical; positive leans the top to the right, like /
    "angle_jitter": 4.0,  # each layer's angle differs from the image's by up to this
    "width": (1.0, 2.5),  # pixels: twice the σ of the streak's Gaussian cross-section
}
DEFAULTS: dict[str, dict] = {
    "linear": {
        **_STREAKS,
        "brightness": (0.4, 0.9),  # added intensity at a streak's core
        "blend": ("add", "screen"),
        "veil": 0.0,  # haze: the share of the image replaced by the airlight
        "sheet": 0.0,  # peak added intensity of a rain sheet: smooth, uneven brightening along the rain
    },
    "photoshop": {
        "layers": (1, 2),  # noise layers, one direction each
        "density": (0.01, 0.06),  # share of noise specks that Levels keeps
        "speck": (0.3, 1.0),  # σ in pixels of the slight blur before Levels (speck size)
        "length": (8.0, 30.0),  # Motion Blur distance in pixels
        "angle": (-30.0, 30.0),
        "angle_jitter": 4.0,
        "brightness": (0.5, 1.0),  # Levels' output white: the brightest streak's intensity
        "opacity": (0.7, 0.9),  # the Screen layer's opacity
    },
    "camera": {
        **_STREAKS,
        "brightness": (0.4, 0.9),  # opacity of a streak's core over the background
        "defocus": (0.3, 1.5),  # σ in pixels of the blur of out-of-focus streaks
        "veil": (0.02, 0.15),
        "scatter": (0.0, 1.0),  # σ in pixels of the blur that scattering puts on the background
        "shot_noise": (0.005, 0.02),  # noise std at full-scale signal, grows with √signal
        "read_noise": (0.001, 0.005),  # noise std independent of the signal
        "tone_gamma": (0.8, 1.25),  # the camera's curve: the sRGB curve raised to this power
        "jpeg_quality": (70, 95),
    },
}
_INTEGER_PARAMS = ("layers", "jpeg_quality")
_LIMITS = {  # allowed values; any other parameter must be >= 0
    "layers": (1, 16), "density": (0, 1), "length": (1, 1000), "angle": (-180, 180), "width": (0.1, 100),
    "brightness": (0, 1), "opacity": (0, 1), "veil": (0, 1), "sheet": (0, 1), "tone_gamma": (0.1, 10), "jpeg_quality": (1, 100),
}
_LAYER_PARAMS = ("length", "width", "brightness", "defocus")


def _check(name: str, value: float) -> None:
    low, high = _LIMITS.get(name, (0, math.inf))
    if not low <= value <= high:
        raise DerainError(f"rain parameter {name}: {value} is outside [{low}, {high}]")


def draw_param(name: str, spec, rng: np.random.Generator):
    """A fixed value, or one drawn from a (low, high) range or a tuple of choices, rounded for meta.json."""
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, (tuple, list)):
        _check(name, spec)
        return int(spec) if name in _INTEGER_PARAMS else round(float(spec), 4)
    if all(isinstance(s, str) for s in spec):
        return str(spec[int(rng.integers(len(spec)))])
    if len(spec) != 2:
        raise DerainError(f"rain parameter {name}: expected a value or a (low, high) range, got {spec!r}")
    low, high = spec
    _check(name, low)
    _check(name, high)
    if name in _INTEGER_PARAMS:
        return int(rng.integers(int(low), int(high) + 1))
    return round(float(rng.uniform(low, high)), 4)


def streak_kernel(length: float, angle: float, width: float) -> np.ndarray:
    """One streak: a segment `length` px long at `angle`° from vertical, Gaussian cross-section, peak 1."""
    sigma = max(width, 0.5) / 2
    radius = math.ceil(length / 2 + 3 * sigma)
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    theta = math.radians(angle)
    dx, dy = math.sin(theta), -math.cos(theta)  # image rows grow downwards
    along = np.clip(x * dx + y * dy, -length / 2, length / 2)
    dist2 = (x - along * dx) ** 2 + (y - along * dy) ** 2
    return np.exp(-dist2 / (2 * sigma**2))


def streak_layer(shape: tuple[int, int], density: float, length: float, angle: float, width: float,
                 rng: np.random.Generator) -> np.ndarray:
    """H×W map in [0, 1] of streaks covering about `density` of the image (before overlaps)."""
    kernel = streak_kernel(length, angle, width)
    radius = kernel.shape[0] // 2
    canvas = (shape[0] + 2 * radius, shape[1] + 2 * radius)  # seeds off-image still reach the border
    count = rng.poisson(density * canvas[0] * canvas[1] / (length * max(width, 1.0)))
    seeds = np.zeros(canvas)
    rows, cols = rng.integers(canvas[0], size=count), rng.integers(canvas[1], size=count)
    np.add.at(seeds, (rows, cols), rng.uniform(0.5, 1.0, size=count))
    return np.clip(fftconvolve(seeds, kernel, mode="valid"), 0.0, 1.0)


def _draw_layers(params: dict, shape: tuple[int, int], rng: np.random.Generator) -> tuple[list, list]:
    """Streak maps and their parameters; the layers share the image's angle up to `angle_jitter`."""
    count = draw_param("layers", params["layers"], rng)
    density = draw_param("density", params["density"], rng)
    angle = draw_param("angle", params["angle"], rng)
    jitter = draw_param("angle_jitter", params["angle_jitter"], rng)
    maps, metas = [], []
    for _ in range(count):
        layer = {name: draw_param(name, params[name], rng) for name in _LAYER_PARAMS if name in params}
        layer["angle"] = round(angle + float(rng.uniform(-jitter, jitter)), 4)
        layer["density"] = round(density / count, 4)
        maps.append(streak_layer(shape, layer["density"], layer["length"], layer["angle"], layer["width"], rng))
        metas.append(layer)
    return maps, metas


def rain_sheet(shape: tuple[int, int], angle: float, rng: np.random.Generator) -> np.ndarray:
    """H×W map in [0, 1], mean about 0.5: the uneven glow of dense rain seen as a whole. Noise smoothed
    twice: along the rain (a streak kernel 60-240 px long, 8-24 px wide) and over a quarter of the
    image (on a grid 1/step as fine, then upsampled, so large photos stay fast)."""
    length, width = float(rng.uniform(60, 240)), float(rng.uniform(8, 24))
    field = fftconvolve(rng.standard_normal(shape), streak_kernel(length, angle, width), mode="same")
    step = max(1, min(shape) // 64)
    grid = gaussian_filter(rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2)),
                           0.25 * min(shape) / step, mode="wrap")
    coarse = zoom(grid, step, order=1)[:shape[0], :shape[1]]
    field = sum((f - f.mean()) / (f.std() + 1e-12) for f in (field, coarse))
    return np.clip(0.5 + 0.18 * field, 0.0, 1.0)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def airlight(img: np.ndarray) -> float:
    """Brightness of the veil and of lit drops: the image's 95th-percentile luminance, at least half of full scale."""
    return max(float(np.percentile(img.mean(axis=2), 95)), 0.5)


def _linear(clean: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    maps, layers = _draw_layers(params, clean.shape[:2], rng)
    rain = sum(m * layer["brightness"] for m, layer in zip(maps, layers))
    sheet = draw_param("sheet", params["sheet"], rng)
    if sheet > 0:
        rain = rain + sheet * rain_sheet(clean.shape[:2], layers[0]["angle"], rng)
    rain = np.clip(rain, 0.0, 1.0)[..., None]
    blend, veil = draw_param("blend", params["blend"], rng), draw_param("veil", params["veil"], rng)
    light = airlight(clean)
    background = clean * (1 - veil) + light * veil
    if blend == "add":
        rainy = background + rain
    elif blend == "screen":
        rainy = 1 - (1 - background) * (1 - rain)
    else:
        raise DerainError(f"rain parameter blend: expected 'add' or 'screen', got {blend!r}")
    meta = {"blend": blend, "veil": veil, "airlight": round(light, 4), "layers": layers}
    return np.clip(rainy, 0.0, 1.0), {**meta, "sheet": sheet} if sheet else meta


def _camera(clean: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    maps, layers = _draw_layers(params, clean.shape[:2], rng)
    meta = {name: draw_param(name, params[name], rng)
            for name in ("veil", "scatter", "shot_noise", "read_noise", "tone_gamma", "jpeg_quality")}
    gamma = meta["tone_gamma"]
    radiance = srgb_to_linear(clean ** (1 / gamma))  # undo the camera curve: sRGB, then gamma
    light = airlight(radiance)
    if meta["scatter"] > 0:
        radiance = gaussian_filter(radiance, sigma=(meta["scatter"], meta["scatter"], 0))
    radiance = radiance * (1 - meta["veil"]) + light * meta["veil"]
    for streaks, layer in zip(maps, layers):  # drops lit by the sky, over what lies behind them
        alpha = np.clip(gaussian_filter(streaks, layer["defocus"]) * layer["brightness"], 0.0, 1.0)[..., None]
        radiance = radiance * (1 - alpha) + light * alpha
    std = np.sqrt(meta["shot_noise"] ** 2 * radiance + meta["read_noise"] ** 2)
    radiance = np.clip(radiance + std * rng.standard_normal(radiance.shape), 0.0, 1.0)
    rainy = linear_to_srgb(radiance) ** gamma
    return rainy, {**meta, "airlight": round(light, 4), "layers": layers}


def motion_blur_kernel(length: float, angle: float) -> np.ndarray:
    """Photoshop's Motion Blur: a 1-px line `length` px long at `angle`° from vertical, summing to 1."""
    kernel = streak_kernel(length, angle, 1.0)
    return kernel / kernel.sum()


def photoshop_layer(shape: tuple[int, int], density: float, speck: float, length: float, angle: float,
                    brightness: float, rng: np.random.Generator) -> np.ndarray:
    """H×W rain layer in [0, brightness]: noise, blur, Levels keeping the top `density`, Motion Blur,
    then Levels again so the brightest streak reaches `brightness`."""
    kernel = motion_blur_kernel(length, angle)
    radius = kernel.shape[0] // 2
    noise = gaussian_filter(rng.standard_normal((shape[0] + 2 * radius, shape[1] + 2 * radius)), speck)
    threshold = np.quantile(noise, 1 - density)
    specks = np.clip((noise - threshold) / (noise.max() - threshold + 1e-12), 0.0, 1.0)
    streaks = fftconvolve(specks, kernel, mode="valid").clip(0.0, None)
    return brightness * np.clip(streaks / (np.quantile(streaks, 0.999) + 1e-12), 0.0, 1.0)


def _photoshop(clean: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    count, angle = draw_param("layers", params["layers"], rng), draw_param("angle", params["angle"], rng)
    jitter, opacity = draw_param("angle_jitter", params["angle_jitter"], rng), draw_param("opacity", params["opacity"], rng)
    rainy, layers = clean, []
    for _ in range(count):
        layer = {name: draw_param(name, params[name], rng) for name in ("density", "speck", "length", "brightness")}
        layer["angle"] = round(angle + float(rng.uniform(-jitter, jitter)), 4)
        rain = opacity * photoshop_layer(clean.shape[:2], rng=rng, **layer)[..., None]
        rainy = 1 - (1 - rainy) * (1 - rain)  # Screen
        layers.append(layer)
    return np.clip(rainy, 0.0, 1.0), {"opacity": opacity, "layers": layers}


def synthesize(clean: np.ndarray, model: str, rng: np.random.Generator, **params) -> tuple[np.ndarray, dict]:
    """Add rain to an H×W×3 float image in [0, 1]; returns (rainy float32, the parameters drawn).

    `params` override `DEFAULTS[model]`. For `camera`, meta["jpeg_quality"] is the quality to save
    the rainy image with: the returned array is not yet compressed.
    """
    if model not in MODELS:
        raise DerainError(f"unknown rain model {model!r}; choose one of {list(MODELS)}")
    unknown = sorted(set(params) - set(DEFAULTS[model]))
    if unknown:
        raise DerainError(f"unknown {model} rain parameter(s) {unknown}; known: {sorted(DEFAULTS[model])}")
    clean = np.asarray(clean, dtype=np.float64)
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise DerainError(f"synthesize expects an H×W×3 image, got shape {clean.shape}")
    make = {"linear": _linear, "photoshop": _photoshop, "camera": _camera}[model]
    rainy, meta = make(clean, {**DEFAULTS[model], **params}, rng)
    return rainy.astype(np.float32), {"model": model, **meta}


def rainy_suffix(meta: dict) -> str:
    """Camera-model rain is saved as JPEG at its drawn quality; linear rain as lossless PNG."""
    return ".jpg" if "jpeg_quality" in meta else ".png"


def save_pair(out: str | Path, name: str, clean: np.ndarray, rainy: np.ndarray, meta: dict) -> dict:
    """Write `out/rainy/<name>.png|jpg` and `out/clean/<name>.png`; returns meta with the file names."""
    out = Path(out)
    rainy_name, clean_name = name + rainy_suffix(meta), name + ".png"
    write_image(out / "rainy" / rainy_name, rainy, quality=meta.get("jpeg_quality", 95))
    write_image(out / "clean" / clean_name, clean)
    return {"name": name, "rainy": rainy_name, "clean": clean_name, **meta}


def prepare_output(out: str | Path, manifest: str = "meta.json") -> Path:
    """Make `out` ready: new or empty, or written by an earlier run (whose listed files are removed)."""
    out = Path(out)
    previous = out / manifest
    if previous.is_file():
        try:
            entries = json.loads(previous.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            raise DerainError(f"{previous}: unreadable manifest of an earlier run; delete {out} first") from None
        for relative in entries:
            (out / relative).unlink(missing_ok=True)
        previous.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise DerainError(f"{out}: folder is not empty and holds no {manifest}; choose a new output folder")
    elif out.exists() and not out.is_dir():
        raise DerainError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_manifest(path: Path, header: dict, pairs: Iterable[dict], files: Iterable[str]) -> Path:
    """meta.json: the run's settings, every pair's drawn parameters and the files written (for reruns)."""
    text = json.dumps({**header, "pairs": list(pairs), "files": sorted(files)}, indent=1, sort_keys=True)
    path.write_text(text + "\n")
    return path


def synth_folder(clean_dir: str | Path, out: str | Path, model: str, n: int | None = None, seed: int = 0,
                 crop: int | None = None, params: dict | None = None, progress: bool = True,
                 families: dict[str, float] | None = None, bank: Sequence[str | Path] = ()) -> Path:
    """Make `n` pairs from the images under `clean_dir` (recursive) in the paired layout; returns meta.json.
    model="mix" draws each pair's rain family by `families` weights (derain.data.families) instead; the
    `real` family harvests its streaks from the rainy photos of `bank` (derain.data.rain_bank).

    Pair i uses clean image i mod count in sorted order (so n defaults to one pair per image), whole
    or, with `crop`, a random crop×crop window (reflect-padded if the image is smaller). Its random
    draws come from (seed, i) alone, so the same arguments give byte-identical files.
    """
    clean_dir = Path(clean_dir)
    sources = list_images(clean_dir)
    if not sources:
        raise DerainError(f"{clean_dir}: no clean images found")
    n = len(sources) if n is None else n
    if n < 1:
        raise DerainError(f"--n must be at least 1, got {n}")
    params, rain_bank = dict(params or {}), None
    if model == "mix":
        from derain.data.families import TRAIN_WEIGHTS, bank_for, check_weights, mix_rain

        if params:
            raise DerainError("rain parameters do not apply to --model mix: each family has its own ranges")
        weights = check_weights(families or TRAIN_WEIGHTS)
        rain_bank = bank_for(weights, bank)
        make = lambda clean, rng: mix_rain(clean, rng, weights, rain_bank)  # noqa: E731
    else:
        make = lambda clean, rng: synthesize(clean, model, rng, **params)  # noqa: E731
        synthesize(np.zeros((8, 8, 3)), model, np.random.default_rng(0), **params)  # check params before writing
    out = prepare_output(out)
    digits = max(4, len(str(n - 1)))
    pairs, files = [], []
    for i in progress_bar(range(n), desc=f"synth {model}", unit="pair", disable=not progress):
        source = sources[i % len(sources)]
        rng = np.random.default_rng([seed, i])
        clean = read_image_uint8(source)
        if crop:
            clean = random_crop([clean], crop, rng)[0]
        rainy, meta = make(clean / 255.0, rng)
        entry = save_pair(out, f"{i:0{digits}d}_{source.stem}", clean, rainy, meta)
        pairs.append({"source": source.relative_to(clean_dir).as_posix(), **entry})
        files += [f"rainy/{entry['rainy']}", f"clean/{entry['clean']}"]
    header = {"model": model, "seed": seed, "n": n, "crop": crop, "params": params, "clean_dir": str(clean_dir),
              **({"families": weights} if model == "mix" else {}),
              **({"bank": [p.as_posix() for p in rain_bank.photos]} if rain_bank else {})}
    return write_manifest(out / "meta.json", header, pairs, files)

