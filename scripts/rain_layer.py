"""Measure the rain layer of a paired set, and what a model leaves of it.

    python scripts/rain_layer.py ../shared/data/paired/ddn_sirr_test20 [--model DIR ...]

Per pair, on the Y channel of the deraining metric (`rgb_to_y`, grey levels 0-255), the layer is
rainy − clean, split by a Gaussian low-pass (σ = 8 px) into a smooth part and the streaks:
  lift    mean of the layer (how much the rain brightens the image)
  spread  spatial std of the smooth part (how uneven that brightening is)
  slope   of the line fitted to smooth(rainy) against smooth(clean): 1 for additive rain, 1 − v for a veil v
  low, high   mean squared error of each part, so low + high ≈ the MSE behind the Y-PSNR
With --model, the same split of (output − clean): what the model left, per band.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import gaussian_filter

from derain.data import list_pairs, load_pair_uint8
from derain.metrics.psnr_ssim import rgb_to_y

SIGMA = 8.0


def bands(image: np.ndarray, clean_y: np.ndarray) -> dict:
    error = rgb_to_y(image).astype(np.float64) - clean_y
    smooth = gaussian_filter(error, SIGMA)
    return {"lift": error.mean(), "spread": smooth.std(), "low": (smooth**2).mean(), "high": ((error - smooth)**2).mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a paired dataset, in any layout derain reads")
    parser.add_argument("--model", action="append", default=[], help="a model folder (repeatable)")
    args = parser.parse_args()
    import derain

    models = {m: derain.load(m) for m in args.model}
    rows = {"input": [], **{m: [] for m in models}}
    print(f"{'pair':<14}{'lift':>7}{'spread':>8}{'slope':>7}  MSE low / high: input" + "".join(f" | {m}" for m in models))
    for pair in list_pairs(args.data):
        rainy, clean = load_pair_uint8(pair)
        clean_y = rgb_to_y(clean).astype(np.float64)
        layer = bands(rainy, clean_y)
        slope = np.polyfit(gaussian_filter(clean_y, SIGMA).ravel(),
                           gaussian_filter(rgb_to_y(rainy).astype(np.float64), SIGMA).ravel(), 1)[0]
        rows["input"].append(layer)
        line = f"{pair.name:<14}{layer['lift']:7.1f}{layer['spread']:8.1f}{slope:7.2f}  {layer['low']:7.1f} / {layer['high']:5.1f}"
        for name, model in models.items():
            rows[name].append(bands(np.asarray(model(rainy)), clean_y))
            line += f" | {rows[name][-1]['low']:7.1f} / {rows[name][-1]['high']:5.1f}"
        print(line)
    for name, found in rows.items():
        low, high = (np.mean([r[k] for r in found]) for k in ("low", "high"))
        print(f"{name}: mean MSE {low + high:.1f} = low {low:.1f} ({100 * low / (low + high):.0f}%) + high {high:.1f}")


if __name__ == "__main__":
    main()
