"""A soft threshold with hysteresis, tried at inference and dropped (docs/model_history.md, session 31).

    python scripts/threshold_hysteresis.py [--model bundled] [--low 8 6] [--grow 2]

Where the model's raw darkening (darken-only, before its threshold) exceeds the threshold T in some channel,
the mask grown by GROW px is thresholded at LOW levels instead of T, so the faint tails and skirts of the
streaks it finds go too; elsewhere T stays. Scored like a candidate (scripts/candidate.sh): the validation
suite per family and the 15 choice photos of real rain, T alone first (it reproduces the model's own numbers).
"""
from __future__ import annotations

import argparse
import hashlib

import numpy as np
from scipy.ndimage import binary_dilation

from derain.api import load_network
from derain.imageio import read_image_uint8
from derain.metrics.streaks import streak_report
from derain.suite import score_suite, summarize

from real_rain_report import background_shift, brightness_change, read_split, shift_by_region, summary
from threshold_margin import model_threshold, raw_residual, shipped_output


def hysteresis(net, low: float | None, grow: int):
    """uint8 photo -> uint8 output: the raw residual soft-thresholded at the model's own threshold T (one per
    pixel with shrink_streaks), or at `low` (where lower) near a change over T."""
    cache = {}

    def run(img: np.ndarray) -> np.ndarray:
        key = hashlib.md5(img.tobytes()).hexdigest()  # one forward per photo for every threshold
        if key not in cache:
            cache[key] = raw_residual(net, img), model_threshold(net, img)
        raw, t = cache[key]
        threshold = t
        if low is not None:
            near = binary_dilation((-raw).max(2)[..., None] > t, iterations=grow)
            threshold = np.where(near, np.minimum(low, t), t)
        return shipped_output(img, raw, threshold, darken_only=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--low", type=float, nargs="+", default=[8.0, 6.0])
    parser.add_argument("--grow", type=int, default=2)
    parser.add_argument("--suite", default="results/suite-data")
    parser.add_argument("--rainy", default="../shared/data/real_rain/sirr100")
    args = parser.parse_args()
    net = load_network(args.model).eval()
    photos = [read_image_uint8(p) for p in read_split(args.rainy, "choice")]
    for low in [None, *args.low]:
        model = hysteresis(net, low, args.grow)
        s = summarize(score_suite(model, args.suite))
        rows = []
        for img in photos:
            out = model(img)
            r = streak_report(img, out)
            rows.append((r["removed"], r["texture_kept"], *brightness_change(img, out), background_shift(img, out)[0],
                         *shift_by_region(img, out)))
        print(f"== the model's threshold ({net.config.shrink * 255:.2f}, {net.config.shrink_streaks * 255:.2f} on streaks)"
              + ("" if low is None else f", {low:g} within {args.grow} px"))
        print("suite: " + ", ".join(f"{k} {v['psnr']:.2f} dB" if v["gain"] is None else
                                    f"{k} {v['gain']:+.2f} ({v['worse_share']:.0%} worse)" for k, v in sorted(s.items())))
        print(summary("choice photos", np.array(rows)), flush=True)


if __name__ == "__main__":
    main()
