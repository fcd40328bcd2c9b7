"""The validation suite: one synthetic set per rain family, from clean photos held out of training.

Every model and recipe choice is made here, never on a test set. `build_suite` writes the sets in the
paired layout, deterministically from a seed (`rainy/<family>__<folder>__<stem>.png`, same name under
`clean/`, and meta.json with every image's drawn rain; every family but `real`, which needs real rain);
`score_suite` reports per family the input and output Y-PSNR/SSIM, the gain, the share of images made worse
than their input and the mean brightness shift of the output against the clean photo. For the `none`
family the input is the clean photo, so its output PSNR is PSNR(output, input) and "worse" means below
NO_RAIN_FLOOR_DB.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from derain.data.families import HOLDOUT_SHARE, SYNTHETIC_FAMILIES, add_family_rain, holdout
from derain.data.layouts import list_images, list_pairs, load_pair_uint8
from derain.data.synthesis import prepare_output, write_manifest
from derain.errors import DerainError
from derain.evaluation import progress
from derain.imageio import read_image_uint8, write_image
from derain.metrics import brightness, mean_psnr, psnr, ssim

NO_RAIN_FLOOR_DB = 40.0  # a clean photo must come back at least this close to itself
SEPARATOR = "__"

SUITE_CROP = 384  # central crop of each photo, pixels


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central window of at most size×size."""
    h, w = img.shape[:2]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return img[top:top + size, left:left + size]


def suite_photos(clean_root: str | Path, share: float = HOLDOUT_SHARE) -> list[Path]:
    """The held-out photos under `clean_root`: those `families.holdout` keeps out of training."""
    photos = holdout(list_images(clean_root), share=share)[1]
    if not photos:
        raise DerainError(f"{clean_root}: no held-out photos (no images, or too few for a {share:.0%} share)")
    return photos


def build_suite(clean_root: str | Path, out: str | Path, seed: int = 0, crop: int = SUITE_CROP,
                share: float = HOLDOUT_SHARE, families: list[str] | None = None) -> Path:
    """Write the suite into `out` (new, empty or an earlier suite); returns its meta.json."""
    clean_root, families = Path(clean_root), families or list(SYNTHETIC_FAMILIES)
    photos = suite_photos(clean_root, share)
    out = prepare_output(out)
    entries, files = [], []
    for f, family in enumerate(families):
        for i, photo in enumerate(progress(photos, f"suite {family}")):
            clean = center_crop(read_image_uint8(photo), crop)
            rainy, meta = add_family_rain(clean / 255.0, family, np.random.default_rng([seed, f, i]))
            name = SEPARATOR.join([family, photo.parent.name, photo.stem]) + ".png"
            write_image(out / "rainy" / name, rainy)
            write_image(out / "clean" / name, clean)
            entries.append({"name": name, "source": photo.relative_to(clean_root).as_posix(), **meta})
            files += [f"rainy/{name}", f"clean/{name}"]
    header = {"suite": families, "seed": seed, "crop": crop, "holdout_share": share, "clean_dir": str(clean_root)}
    return write_manifest(out / "meta.json", header, entries, files)


def ensure_suite(clean_root: str | Path, out: str | Path, seed: int = 0, crop: int = SUITE_CROP,
                 share: float = HOLDOUT_SHARE) -> Path:
    """`out` holding the suite for these settings: reused if its meta.json matches, else (re)built."""
    meta = Path(out) / "meta.json"
    if meta.is_file():
        header = json.loads(meta.read_text())
        if (header.get("seed"), header.get("crop"), header.get("holdout_share"), header.get("suite")) == \
                (seed, crop, share, list(SYNTHETIC_FAMILIES)):
            return Path(out)
    build_suite(clean_root, out, seed, crop, share)
    return Path(out)


def family_of(name: str) -> str:
    return name.split(SEPARATOR, 1)[0] if SEPARATOR in name else "all"


def score_suite(model: Callable[[np.ndarray], np.ndarray] | None, suite_dir: str | Path) -> list[dict]:
    """One row per image: family, input and output PSNR/SSIM against the clean photo, brightness shift."""
    rows = []
    for pair in progress(list_pairs(suite_dir), "suite"):
        rainy, clean = load_pair_uint8(pair)
        output = model(rainy) if model is not None else rainy
        rows.append({"image": pair.name, "family": family_of(pair.name),
                     "input_psnr": psnr(rainy, clean), "input_ssim": ssim(rainy, clean),
                     "psnr": psnr(output, clean), "ssim": ssim(output, clean),
                     "brightness_shift": brightness(output) - brightness(clean)})
    return rows


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per family (and `all` rain families together): means, gain, share worse, brightness shift."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["family"], []).append(row)
    rainy = [r for r in rows if r["family"] != "none"]
    if rainy and len(groups) > 1:
        groups["rain (all)"] = rainy
    summary = {}
    for family, items in groups.items():
        none = family == "none"
        worse = [harm_margin(r) < 0 for r in items]
        out_psnr = mean_psnr([r["psnr"] for r in items])
        in_psnr = mean_psnr([r["input_psnr"] for r in items])
        summary[family] = {
            "images": len(items), "input_psnr": in_psnr, "input_ssim": float(np.mean([r["input_ssim"] for r in items])),
            "psnr": out_psnr, "ssim": float(np.mean([r["ssim"] for r in items])),
            "gain": None if none else out_psnr - in_psnr, "worse_share": float(np.mean(worse)),
            "brightness_shift": float(np.mean([r["brightness_shift"] for r in items])),
        }
    return summary


def harm_margin(row: dict) -> float:
    """dB above do-no-harm's bar: a rainy image's input PSNR; for a clean photo, NO_RAIN_FLOOR_DB."""
    return row["psnr"] - (NO_RAIN_FLOOR_DB if row["family"] == "none" else row["input_psnr"])


def made_worse(rows: list[dict]) -> list[dict]:
    """The images below do-no-harm's bar, worst first, each with its margin in dB."""
    scored = [{**r, "margin": harm_margin(r)} for r in rows]
    return sorted((r for r in scored if r["margin"] < 0), key=lambda r: r["margin"])


def summary_table(summary: dict[str, dict]) -> str:
    """Markdown: one row per family."""
    from derain.evaluation import markdown_table

    rows = []
    for family, s in summary.items():
        gain = "—" if s["gain"] is None else f"{s['gain']:+.2f}"
        inp = "identical" if family == "none" else f"{s['input_psnr']:.2f} / {s['input_ssim']:.4f}"
        rows.append([family, str(s["images"]), inp, f"{s['psnr']:.2f} / {s['ssim']:.4f}", gain,
                     f"{s['worse_share']:.0%}", f"{s['brightness_shift']:+.2f}"])
    header = ["family", "images", "input Y-PSNR / SSIM", "output Y-PSNR / SSIM", "gain dB", "worse",
              "brightness shift"]
    return markdown_table(header, rows)
