"""How a model's gain depends on the rain's angle: `light` and `heavy` rain turned to one angle at a time, on the
suite's held-out photos (never trained on), their sign alternating by photo. A model whose families all run near
vertical gains nothing on rain blown further over (docs/model_history.md, "Rain blown off the vertical").

    python scripts/angle_sweep.py --model bundled [--photos 12] [--crop 256] [--angles 0 15 30 40 50 60 75]
    python scripts/angle_sweep.py --model bundled --told 0 10 -10   # also told the angle (derain run --rain-angle),
                                                                   # off by 0, +10 and -10 degrees (away from vertical: +)
    python scripts/angle_sweep.py --model bundled --auto            # also with --rain-angle auto, derain run's default

The first rows keep every photo upright (--rain-angle 0).
"""
from __future__ import annotations

import argparse

import numpy as np

import derain
from derain.data.families import FAMILIES
from derain.data.synthesis import synthesize
from derain.imageio import read_image_uint8
from derain.metrics import psnr
from derain.suite import center_crop, suite_photos


def sweep(model, photos, angles, families=("light", "heavy"), crop=256, seed=7, told=None):
    """{(family, angle): per-photo gains in dB}, each photo's rain drawn from [seed, angle, photo index]. With
    `told`, the model is given each photo's rain angle that many degrees further from vertical (--rain-angle);
    told="auto" lets it find the angle itself."""
    cleans = [center_crop(read_image_uint8(photo), crop) for photo in photos]
    gains = {}
    for angle in angles:
        for family in families:
            synthesis_model, params = FAMILIES[family]
            row = []
            for i, clean in enumerate(cleans):
                turned = {**params, "angle": float(angle if i % 2 else -angle)}
                rainy, _ = synthesize(clean / 255.0, synthesis_model, np.random.default_rng([seed, int(round(angle)), i]), **turned)
                rainy = np.round(np.clip(rainy, 0, 1) * 255).astype(np.uint8)
                model.rain_angle = (told if told in (None, "auto")
                                    else turned["angle"] + np.sign(turned["angle"]) * told)
                row.append(psnr(model(rainy), clean) - psnr(rainy, clean))
            gains[family, angle] = np.array(row)
    return gains


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--clean", default="../shared/data/clean")
    p.add_argument("--photos", type=int, default=12, help="the first N held-out photos [default: 12]")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--angles", type=float, nargs="+", default=[0, 15, 30, 40, 50, 60, 75])
    p.add_argument("--told", type=float, nargs="*", default=[], metavar="ERR",
                   help="also rows where the model is told the angle, off by ERR degrees (away from vertical: +)")
    p.add_argument("--auto", action="store_true", help="also rows with --rain-angle auto (the model finds the angle)")
    args = p.parse_args()
    model, photos = derain.load(args.model), suite_photos(args.clean)[:args.photos]
    print("| angle from vertical | " + " | ".join(f"{a:g}°" for a in args.angles) + " |")
    print("|---" * (len(args.angles) + 1) + "|")
    for told in [None, *args.told, *(["auto"] if args.auto else [])]:
        gains = sweep(model, photos, args.angles, crop=args.crop, told=told)
        how = "" if told is None else ", --rain-angle auto" if told == "auto" else f", told the angle {told:+g}°"
        for family in ("light", "heavy"):
            cells = [f"{gains[family, a].mean():+.2f} ({np.mean(gains[family, a] < 0):.0%})" for a in args.angles]
            print(f"| {family}{how}: gain (share worse) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
