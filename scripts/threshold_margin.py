"""How far inside its soft threshold a model's darkening sits: the network's raw residual (output − input,
before `shrink` and `darken_only`), as luma in full-range grey levels like the threshold, per photo set.

    python scripts/threshold_margin.py --model bundled [--suite results/suite-data] [--rainy ../shared/data/real_rain/sirr100]

A model trained through a fixed threshold T can learn an offset of about −T in its residual: then a
change of x comes out as x after the threshold, and the threshold no longer drops small changes on the
darkening side. The median raw residual shows it: near −T, a photo's bulk is a level or two from being
darkened; near 0, it has the whole threshold as margin. Sets: the suite's clean photos (`none`), the
demo's clean photos (`derain.data.demo.PHOTOS`, scikit-image's samples, never trained on) and the
choice photos of real rain (scripts/sirr100_split.csv). Per set, means over photos: the median raw
residual, its 10th percentile, the share of pixels past −T, and the Y-PSNR of the model's output (threshold
and cap on) against its input: on clean photos, how nearly they come back unchanged.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from derain.api import load_network
from derain.data.demo import PHOTOS, load_photo
from derain.data.layouts import list_pairs, load_pair_uint8
from derain.imageio import read_image_uint8
from derain.inference import streak_threshold
from derain.metrics.psnr_ssim import Y_WEIGHTS, psnr
from derain.suite import family_of

from real_rain_report import read_split


@contextmanager
def raw_decoder(net: torch.nn.Module):
    """The decoder's soft threshold and darken-only cap switched off inside the block, restored after."""
    decoder = net.decoder
    shrink, darken_only = decoder.shrink, decoder.darken_only
    decoder.shrink, decoder.darken_only = 0.0, False
    try:
        yield net
    finally:
        decoder.shrink, decoder.darken_only = shrink, darken_only


def raw_residual(net: torch.nn.Module, img: np.ndarray) -> np.ndarray:
    """H×W×3 signed output − input in grey levels, with the decoder's threshold and cap switched off."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    with raw_decoder(net), torch.no_grad():
        out = net(x)[0].permute(1, 2, 0).numpy()
    return out * 255 - img


def model_threshold(net: torch.nn.Module, img: np.ndarray) -> float | np.ndarray:
    """The decoder's threshold for `img` in grey levels: `shrink`, or with `shrink_streaks` one per pixel
    (H×W×1, derain.inference.streak_threshold)."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    threshold = streak_threshold(net.config, x)
    return net.decoder.shrink * 255 if threshold is None else threshold[0].permute(1, 2, 0).numpy() * 255


def shipped_output(img: np.ndarray, raw: np.ndarray, threshold: float | np.ndarray, darken_only: bool) -> np.ndarray:
    """What the decoder makes of a raw residual: soft-thresholded (at one threshold, or one per pixel: an
    H×W×1 array), capped at 0 under darken_only."""
    residual = np.sign(raw) * np.maximum(np.abs(raw) - threshold, 0)
    residual = np.minimum(residual, 0) if darken_only else residual
    return np.clip(np.round(img + residual), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--suite", default="results/suite-data")
    parser.add_argument("--rainy", default="../shared/data/real_rain/sirr100")
    args = parser.parse_args()
    net = load_network(args.model)
    shrink, streaks = net.config.shrink * 255, net.config.shrink_streaks * 255
    sets = {
        "suite, clean (none)": [load_pair_uint8(p)[0] for p in list_pairs(args.suite) if family_of(p.name) == "none"]
        if Path(args.suite).is_dir() else [],
        "demo photos, clean": [load_photo(name) for name in PHOTOS],
        "real rain, choice photos": [read_image_uint8(p) for p in read_split(args.rainy, "choice")]
        if Path(args.rainy).is_dir() else [],
    }
    print(f"model {args.model}: threshold {shrink:.2f} grey levels" + (f", {streaks:.2f} on the input's rain streaks"
          if streaks else "") + "; raw residual (luma, grey levels), mean over photos; past -T: past its own pixel's")
    print(f"{'set':<26}{'photos':>7}{'median':>9}{'10th pct':>10}{'past -T':>9}{'output vs input, Y-PSNR':>25}")
    for name, images in sets.items():
        if not images:
            print(f"{name:<26}   (not found; skipped)")
            continue
        rows = []
        for img in images:
            raw = raw_residual(net, img)
            luma = raw @ (Y_WEIGHTS / Y_WEIGHTS.sum())  # rgb2ycbcr's weights, in full-range levels like T
            threshold = model_threshold(net, img)
            out = shipped_output(img, raw, threshold, net.decoder.darken_only)
            past = luma < -(threshold if np.isscalar(threshold) else threshold[..., 0])
            rows.append((np.median(luma), np.percentile(luma, 10), past.mean(), psnr(out, img)))
        m = np.array(rows).mean(0)
        print(f"{name:<26}{len(images):>7}{m[0]:>9.2f}{m[1]:>10.2f}{m[2]:>9.1%}{m[3]:>25.2f}")


if __name__ == "__main__":
    main()
