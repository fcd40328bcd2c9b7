"""Real rain, measured without ground truth: per photo, the share of the oriented streak energy a model
removed, the share of texture it kept (derain.metrics.streaks) and the brightness shift, in grey levels:
the mean change of Y, and its median over the pixels. Removing sparse bright streaks lowers the mean but
leaves the median near 0; a global darkening moves both. The background shift is the mean change over the
pixels that no thin bright detail of the input covers (a white top-hat of 7 px over 4 levels, grown by
2 px): where the rain added no light, so a model that only takes streaks away leaves it at 0.

    python scripts/real_rain_report.py --model bundled [--rainy ../shared/data/real_rain/sirr100] [--n 30]
    python scripts/real_rain_report.py --model bundled --split report   # sirr100's photos never used to choose
    python scripts/real_rain_report.py --model bundled --tta             # with the self-ensemble (4 flips)
    python scripts/real_rain_report.py --model bundled --strength 0.75   # as derain run --strength 0.75
    python scripts/real_rain_report.py --validate [--suite results/suite-data]
    python scripts/real_rain_report.py --layer 1.5 --split choice        # a morphological baseline, no network

--split reads scripts/sirr100_split.csv: `choice` is every second of the first 30 photos, which choose models
(the other 15 are the `real` rain family's bank); `report`
the 45 others that are not duplicates of a photo already counted, labelled by eye for a visible veil
(fog, mist, rain accumulation) before any model was run on them, and reported per label.

The summary also says where the mean shift lies, as each region's share of it in grey levels (they add up
to the mean): on the rain layer's streaks (`rain_layer` > 4 levels), on their 3-px rims (the streaks' soft
skirts), on other thin bright detail (short dashes, highlights of the scene) and on the rest.
--layer G scores no network: the output is the photo with G × its own rain layer taken off its Y. The layer
follows the measure's rain angle, so the measure favours it, and it takes the scene's thin bright lines along
the rain as readily as streaks: on the suite (`--regions --layer 1`) it takes 2.6× the truth's light off the
streak region of light rain, makes 44% of those pairs worse and returns clean photos at 36 dB. It is a
morphological baseline, not a streak-only removal.

--validate checks the measure where the truth is known, on the validation suite: the clean photo as the
"output" (a perfect model), the input itself (nothing removed), a blur (σ 1.5 px) and a darkening (×0.8).
Medians per rain family.
--regions checks the region split there: the clean photo's shift by region (what a perfect model takes, and
where the measure puts it) beside the model's, on the streak families (no veil), and the share off the streaks.

    python scripts/real_rain_report.py --regions --model bundled [--suite results/suite-data]
    python scripts/real_rain_report.py --regions --layer 1.5             # that baseline where the truth is known
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter, grey_opening

from derain.cli.run import TTA_HELP, rain_angle_option
from derain.data.layouts import list_images, list_pairs, load_pair_uint8
from derain.data.rain_bank import rain_layer
from derain.imageio import read_image_uint8
from derain.metrics.psnr_ssim import psnr, rgb_to_y
from derain.metrics.streaks import streak_report
from derain.suite import family_of


def brightness_change(rainy: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """The mean change of Y from `rainy` to `output`, and its median over the pixels."""
    change = rgb_to_y(output).astype(np.float64) - rgb_to_y(rainy)
    return float(change.mean()), float(np.median(change))


BRIGHT_DETAIL = 4.0  # grey levels of Y over a 7-px opening: a streak, or a thin bright scene detail


def thin_bright_detail(y: np.ndarray) -> np.ndarray:
    """Where Y has thin bright detail: a white top-hat of 7 px over BRIGHT_DETAIL, grown by 2 px."""
    return binary_dilation(y - grey_opening(y, size=(7, 7)) > BRIGHT_DETAIL, iterations=2)


def background_shift(rainy: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """The mean change of Y over the pixels no thin bright detail of `rainy` covers, and their share."""
    y = rgb_to_y(rainy).astype(np.float64)
    rest = ~thin_bright_detail(y)
    change = rgb_to_y(output).astype(np.float64) - y
    return (float(change[rest].mean()) if rest.any() else 0.0), float(rest.mean())


REGIONS = ("streaks", "rims", "other detail", "rest")


def shift_by_region(rainy: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The mean change of Y split by REGIONS: each region's sum of changes over all the pixels, so the
    four add up to the mean shift."""
    y = rgb_to_y(rainy).astype(np.float64)
    change = rgb_to_y(output).astype(np.float64) - y
    streaks = rain_layer(rainy) > BRIGHT_DETAIL
    rims = binary_dilation(streaks, iterations=3) & ~streaks
    detail = thin_bright_detail(y) & ~(streaks | rims)
    rest = ~(streaks | rims | detail)
    return np.array([change[region].sum() / change.size for region in (streaks, rims, detail, rest)])


def layer_reference(gain: float):
    """A stand-in model: the photo with `gain` × its own rain layer taken off Y, the same off every channel."""
    def take_streaks(rainy: np.ndarray) -> np.ndarray:
        off = gain * rain_layer(rainy)[..., None] * 255 / 219  # Y moves 219/255 of an equal change of R, G, B
        return np.clip(rainy - off, 0, 255).round().astype(np.uint8)
    return take_streaks


def validate(suite: str) -> None:
    fakes = {"perfect": lambda r, c: c, "identity": lambda r, c: r,
             "blur 1.5": lambda r, c: np.clip(gaussian_filter(r.astype(float), (1.5, 1.5, 0)), 0, 255).astype(np.uint8),
             "darken 0.8": lambda r, c: (r * 0.8).astype(np.uint8)}
    rows: dict[str, list] = {}
    for pair in list_pairs(suite):
        family = family_of(pair.name)
        if family == "none":
            continue
        rainy, clean = load_pair_uint8(pair)
        reports = [streak_report(rainy, fake(rainy, clean)) for fake in fakes.values()]
        rows.setdefault(family, []).append([v for r in reports for v in (r["removed"], r["texture_kept"])]
                                           + list(brightness_change(rainy, clean))
                                           + [background_shift(rainy, clean)[0],
                                              background_shift(rainy, fakes["darken 0.8"](rainy, clean))[0]])
    print("median removed / texture kept per family, for each stand-in output; the perfect output's mean "
          "brightness change, median pixel change and background shift; the darkening's background shift")
    print(f"{'family':<11}" + "".join(f"{name:>20}" for name in fakes) + f"{'perfect: mean / median / background':>40}"
          + f"{'darken: background':>20}")
    for family, values in sorted(rows.items()):
        a = np.array(values)
        m, shifts = np.median(a, 0), a[:, -4:].mean(0)
        print(f"{family:<11}" + "".join(f"{m[2 * i]:>12.2f} / {m[2 * i + 1]:.2f}" for i in range(len(fakes)))
              + f"{shifts[0]:>24.2f} / {shifts[1]:+.2f} / {shifts[2]:+.2f}{shifts[3]:>20.2f}")


STREAK_FAMILIES = ("light", "heavy", "photoshop", "camera", "dense")  # no veil, no clean: as the choice photos


def off_streaks(split: np.ndarray) -> float:
    """The share of a darkening (the region split's sum) that lies off the streaks."""
    return float(split[1:].sum() / split.sum()) if split.sum() < 0 else 0.0


def regions(suite: str, model_name: str, layer: float | None = None) -> None:
    """The region split where the truth is known: on the suite's streak families, the mean shift of the clean
    photo (the perfect output) and of the model (or the `layer` stand-in), by region, and the share of each
    that lies off the streaks; beside them the model's Y-PSNR gain and share of pairs made worse, and on the
    clean photos its Y-PSNR against them."""
    import derain

    model, rows, clean_psnr = layer_reference(layer) if layer is not None else derain.load(model_name), {}, []
    for pair in list_pairs(suite):
        family = family_of(pair.name)
        rainy, clean = load_pair_uint8(pair)
        if family == "none":
            clean_psnr.append(psnr(model(clean), clean))
        elif family in STREAK_FAMILIES:
            output = model(rainy)
            gain = psnr(output, clean) - psnr(rainy, clean)
            rows.setdefault(family, []).append(np.concatenate([shift_by_region(rainy, clean),
                                                               shift_by_region(rainy, output), [gain, gain < 0]]))
    print("mean shift by region (streaks / rims / other detail / rest) and the share off the streaks: "
          "the clean photo (truth), then the model; the model's gain (share worse)")
    for family, values in [*sorted(rows.items()), ("all", [v for vs in rows.values() for v in vs])]:
        a = np.array(values).mean(0)
        truth, out = a[:8].reshape(2, 4)
        print(f"{family:<10} truth " + " / ".join(f"{v:+.2f}" for v in truth) + f"  ({off_streaks(truth):.0%} off)"
              + "   model " + " / ".join(f"{v:+.2f}" for v in out) + f"  ({off_streaks(out):.0%} off)"
              + f"   gain {a[8]:+.2f} dB ({a[9]:.0%} worse)")
    if clean_psnr:
        print(f"clean photos: {np.mean(np.minimum(clean_psnr, 100)):.2f} dB against themselves")


SPLIT = Path(__file__).with_name("sirr100_split.csv")


def split_rows() -> list[dict[str, str]]:
    with open(SPLIT, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def read_split(rainy_dir: str, split: str) -> dict[Path, str]:
    """The photos of one split of scripts/sirr100_split.csv, each with its veil label ('yes', 'no' or '')."""
    return {Path(rainy_dir) / r["file"]: r["veil"] for r in split_rows() if r["split"] == split}


def summary(name: str, a: np.ndarray) -> str:
    return (f"{name} of {len(a)}: removed {a[:, 0].mean():.1%} (median {np.median(a[:, 0]):.1%}), texture kept "
            f"{a[:, 1].mean():.1%}, brightness shift {a[:, 2].mean():+.2f} (|shift| > 3 on {np.mean(abs(a[:, 2]) > 3):.0%}), "
            f"median pixel shift {a[:, 3].mean():+.2f}, background shift {a[:, 4].mean():+.2f}; where: "
            + ", ".join(f"{r} {v:+.2f}" for r, v in zip(REGIONS, a[:, 5:].mean(0))))


def report(model_name: str, photos: dict[Path, str], tta: bool = False, layer: float | None = None,
           scale: str = "auto", strength: float = 1.0, rain_angle: float | str | None = "auto") -> None:
    import derain

    model = (layer_reference(layer) if layer is not None
             else derain.load(model_name, tta=tta, scale=scale, strength=strength, rain_angle=rain_angle))
    rows = []
    for path in photos:
        rainy = read_image_uint8(path)
        output = model(rainy)
        r = streak_report(rainy, output)
        shift, typical = brightness_change(rainy, output)
        background, share = background_shift(rainy, output)
        rows.append((r["removed"], r["texture_kept"], shift, typical, background, *shift_by_region(rainy, output)))
        print(f"{path.name:<28} removed {r['removed']:6.1%}  texture kept {r['texture_kept']:6.1%}  "
              f"brightness {shift:+6.2f}  median pixel {typical:+6.2f}  background {background:+6.2f} "
              f"({share:.0%} of the pixels)", flush=True)
    a, veil = np.array(rows), np.array(list(photos.values()))
    for label, name in (("yes", "veiled photos, mean"), ("no", "photos without a veil, mean")):
        if (veil == label).any():
            print(summary(name, a[veil == label]))
    print(summary("mean", a))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--rainy", default="../shared/data/real_rain/sirr100")
    parser.add_argument("--n", type=int, default=30, help="the first N photos [default: 30]")
    parser.add_argument("--split", choices=["choice", "report"],
                        help="the photos of this split of scripts/sirr100_split.csv instead of the first N")
    parser.add_argument("--tta", action="store_true", help=TTA_HELP)
    parser.add_argument("--strength", type=float, default=1.0, help="derain run --strength [default: 1]")
    parser.add_argument("--scale", default="auto", help="derain at 1/K of each photo's size (derain run --scale) [default: auto]")
    parser.add_argument("--rain-angle", type=rain_angle_option, default="auto", help="derain run --rain-angle [default: auto]")
    parser.add_argument("--layer", type=float, metavar="G",
                        help="score no model: take G × each photo's own rain layer away (a morphological baseline)")
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--regions", action="store_true",
                        help="the region split of the truth and of --model on the suite's streak families")
    parser.add_argument("--suite", default="results/suite-data")
    args = parser.parse_args()
    if args.validate:
        return validate(args.suite)
    if args.regions:
        return regions(args.suite, args.model, args.layer)
    photos = read_split(args.rainy, args.split) if args.split else dict.fromkeys(list_images(args.rainy)[:args.n], "")
    report(args.model, photos, args.tta, args.layer, args.scale, args.strength, args.rain_angle)


if __name__ == "__main__":
    main()
