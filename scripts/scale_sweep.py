"""Rain wider than the model learnt: the validation suite's photos at S times their size, derained at --scale K.

A phone or camera photo at full size shows the same rain several times wider, in pixels, than the web-sized
photos the model learnt from. This takes the central CROP² of each suite photo (rainy and clean alike),
enlarges both S times (Lanczos), and derains the enlarged photo with `derain.load(scale=K)`: the model works
at 1/K of the size and only its change is enlarged back. The right K is about S.

    python scripts/scale_sweep.py --model bundled [--S 1 2 3] [--K 1 2 3] [--crop 192]

Prints, per family and S, each K's Y-PSNR gain over the rainy input (share of photos made worse; mean
brightness shift of the output against the input, grey levels); for the no-rain family, the output against
its input in dB (capped at 100, as `derain suite` does; share under 40 dB). Needs `derain suite --model none` (results/suite-data) and the real-rain validation set
results/realval-data (README, "Validation").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import derain
from derain.metrics.psnr_ssim import brightness, psnr

FAMILIES = ("light", "heavy", "dense", "photoshop", "real", "none")


def pairs(family: str, suite: Path, realval: Path) -> list[tuple[Path, Path]]:
    rainy = sorted((realval / "rainy").glob("*")) if family == "real" else sorted((suite / "rainy").glob(f"{family}__*"))
    return [(r, r.parent.parent / "clean" / r.name) for r in rainy]


def enlarged(path: Path, crop: int, factor: float) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    left, top = max(0, (img.width - crop) // 2), max(0, (img.height - crop) // 2)
    img = img.crop((left, top, min(img.width, left + crop), min(img.height, top + crop)))
    size = (round(img.width * factor), round(img.height * factor))
    return np.asarray(img.resize(size, Image.LANCZOS) if factor > 1 else img)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--S", type=float, nargs="+", default=[1, 2, 3], help="enlargements of the photos (and their rain)")
    p.add_argument("--K", type=float, nargs="+", default=[1, 2, 3], help="--scale values to derain at")
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--suite", type=Path, default=Path("results/suite-data"))
    p.add_argument("--realval", type=Path, default=Path("results/realval-data"))
    args = p.parse_args()
    models = {k: derain.load(args.model, scale=k) for k in args.K}
    print("| family | S | " + " | ".join(f"--scale {k:g}" for k in args.K) + " |")
    print("|---|---|" + "---|" * len(args.K))
    for family in args.families:
        for s in args.S:
            cells = {k: [] for k in args.K}
            for rainy_path, clean_path in pairs(family, args.suite, args.realval):
                rainy, clean = enlarged(rainy_path, args.crop, s), enlarged(clean_path, args.crop, s)
                base, level = psnr(rainy, clean), brightness(rainy)
                for k, model in models.items():
                    out = model(rainy)
                    score = min(psnr(out, rainy), 100.0) if family == "none" else psnr(out, clean) - base
                    cells[k].append((score, brightness(out) - level))
            row = []
            for k, v in cells.items():
                score, shift = np.array(v).T
                worse = f" ({np.mean(score < 40):.0%} under 40)" if family == "none" else f" ({np.mean(score < 0):.0%} worse)"
                row.append(f"{score.mean():{'' if family == 'none' else '+'}.2f}{worse}, {shift.mean():+.2f}")
            print(f"| {family} | {s:g} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
