"""A model's change on every clean training photo, for hard-negative mining (`data.synth.harm_maps`).

    python scripts/harm_maps.py --model bundled -o runs/harm-m40.npz [--clean ../shared/data/clean] [--holdout 0.15]

The photos are those `derain train` fine-tunes on: every image under --clean minus the held-out share (the
suite's photos, which stay unseen). Each map is the photo's largest change over R, G and B in grey levels,
as `derain run --rain-angle 0` would write it (threshold and cap on; upright, as training crops are: the
turns of `--rain-angle auto` are no mistake of the upright network); a clean photo should get none. Prints
how much of the photos the model changes, by more than 1 and 10 levels. With
`data.synth.harmed_negatives: N`, training then shows the model, without rain, the one of N random crops it
changes most.
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

import derain
from derain.data.families import HOLDOUT_SHARE
from derain.data.harm import change_map, photo_key, save_harm_maps
from derain.imageio import read_image_uint8
from derain.train.stages import training_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--clean", default="../shared/data/clean")
    ap.add_argument("--holdout", type=float, default=HOLDOUT_SHARE)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    model = derain.load(args.model, scale=1, rain_angle=0)
    maps, over1, over10 = {}, [], []
    for path in tqdm(training_photos([args.clean], args.holdout), desc="harm maps", unit="photo"):
        change = change_map(model, read_image_uint8(path))
        maps[photo_key(path)] = change
        over1.append(float((change > 1).mean()))
        over10.append(float((change > 10).mean()))
    save_harm_maps(args.out, maps)
    print(f"{len(maps)} photos -> {args.out}; changed by more than 1 level: {100 * np.mean(over1):.2f}% of pixels "
          f"(worst photo {100 * max(over1):.1f}%), by more than 10: {100 * np.mean(over10):.2f}% "
          f"(worst {100 * max(over10):.1f}%)")


if __name__ == "__main__":
    main()
