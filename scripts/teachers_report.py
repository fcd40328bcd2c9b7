"""How well the TTL teachers learnt their tasks, on photos they never trained on.

    python scripts/teachers_report.py runs/v1 [--clean ../shared/data/clean] [--rainy ../shared/data/real_rain/sirr100]
    python scripts/teachers_report.py runs/recog-flip     # a run of --stages recog alone: T_recog only

T_recog (score > 0.5 means rain-free): accuracy on the held-out clean photos (data.holdout), on the same
photos with synthetic rain of each family (does it respond to rain, or to the scene?), and on the real
rainy photos: those T_recog holds out (runs made since it does; a photo is held out only if no near-duplicate
of it is trained on, derain.data.duplicates), and the rest. T_recon: Y-PSNR of its output against the clean
photo and of the blurred input, on the held-out clean photos blurred with σ 0.5, 1.5 and 3.
Central 384² crops throughout.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from derain.data.datasets import to_tensor
from derain.data.degradations import gaussian_blur
from derain.data.families import HOLDOUT_SHARE, add_family_rain, holdout
from derain.data.layouts import list_images
from derain.hub import from_pretrained
from derain.imageio import read_image_uint8
from derain.metrics import psnr
from derain.suite import SUITE_CROP as CROP, center_crop, suite_photos


def as_uint8(batch: torch.Tensor) -> np.ndarray:
    """The first image of a 1×3×H×W float batch as H×W×3 uint8."""
    return (batch[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def recog_scores(net, images: list[np.ndarray]) -> np.ndarray:
    return np.array([float(net(to_tensor(img / 255.0)[None])) for img in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--clean", default="../shared/data/clean")
    parser.add_argument("--rainy", default="../shared/data/real_rain/sirr100")
    parser.add_argument("--share", type=float, default=HOLDOUT_SHARE, help="the run's data.holdout")
    args = parser.parse_args()
    clean = [center_crop(read_image_uint8(p), CROP) for p in suite_photos(args.clean)]

    recog = from_pretrained(args.run / "recog" / "model")
    print(f"T_recog ({len(clean)} held-out clean photos; label 1 = rain-free, 0 = rainy)")
    clean_accuracy = np.mean(recog_scores(recog, clean) > 0.5)
    print(f"  clean, held out:          accuracy {clean_accuracy:.0%}")
    for family in ("light", "heavy", "photoshop", "haze", "camera"):
        rainy = [np.round(add_family_rain(c / 255.0, family, np.random.default_rng(i))[0] * 255).astype(np.uint8)
                 for i, c in enumerate(clean)]
        print(f"  same photos, {family + ' rain:':<13} accuracy {np.mean(recog_scores(recog, rainy) < 0.5):.0%}")
    trained, held_out = holdout(list_images(args.rainy), share=args.share)
    for name, photos in (("held out, no copy trained on", held_out),
                         ("trained on (or a copy was) unless the run predates the hold-out", trained)):
        real = [center_crop(read_image_uint8(p), CROP) for p in photos]
        accuracy = np.mean(recog_scores(recog, real) < 0.5)
        print(f"  real rain, {name} ({len(real)}): accuracy {accuracy:.0%}")
        if photos is held_out:
            balanced = (accuracy + clean_accuracy) / 2
            print(f"  balanced accuracy, held-out real rain against held-out clean: {balanced:.1%}")

    if not (args.run / "recon" / "model").is_dir():
        print(f"T_recon: {args.run / 'recon' / 'model'} not found (a run of --stages recog alone)")
        return

    recon = from_pretrained(args.run / "recon" / "model")
    print("T_recon (Y-PSNR against the clean photo, mean over the held-out photos)")
    for sigma in (0.5, 1.5, 3.0):
        scores = []
        for c in clean:
            blurred = gaussian_blur(to_tensor(c / 255.0), sigma)[None]
            with torch.no_grad():
                out = recon(blurred)
            scores.append((psnr(as_uint8(blurred), c), psnr(as_uint8(out), c)))
        blur_db, out_db = np.mean(scores, axis=0)
        print(f"  σ {sigma}: blurred input {blur_db:.2f} dB, T_recon output {out_db:.2f} dB ({out_db - blur_db:+.2f})")


if __name__ == "__main__":
    main()
