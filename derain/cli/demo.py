"""`derain demo -o DIR`: derain rain synthesised on scikit-image's bundled photos (offline), write
rainy | derained | clean panels and an index.html, and print Y-PSNR/SSIM before and after."""
from __future__ import annotations

import html
import time
from pathlib import Path

from derain.cli.run import add_inference_options, load_from_args

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")


def register(sub) -> None:
    p = sub.add_parser("demo", help="derain sample photos, write before/after panels and index.html",
                       description="Add rain (linear model, fixed seed) to photos bundled with "
                                   "scikit-image, derain them, write rainy | derained | clean PNGs and an "
                                   "index.html, and print Y-PSNR/SSIM (MATLAB protocol) against the clean photos.")
    p.add_argument("-o", "--output", default="derain-demo", metavar="DIR", help="output folder [default: derain-demo]")
    p.add_argument("--model", metavar="DIR", help="model directory [default: the bundled model]")
    p.add_argument("--size", type=int, default=384, help="longest side of each sample in pixels [default: 384]")
    p.add_argument("--seed", type=int, default=0, help="seed of the rain [default: 0]")
    add_inference_options(p)
    p.set_defaults(func=run)


def samples(size: int, seed: int):
    """(name, rainy uint8, clean uint8) for each sample photo, scaled to `size` on the long side."""
    import numpy as np

    from derain.data.demo import load_photo
    from derain.data.synthesis import synthesize
    from derain.figures import fit

    for i, name in enumerate(SAMPLES):
        clean = fit(load_photo(name), size)
        rainy, _ = synthesize(clean / 255.0, "linear", np.random.default_rng([seed, i]))
        yield name, np.round(rainy * 255.0).astype(np.uint8), clean


def run(args) -> int:
    from derain.atomic import atomic_write
    from derain.figures import panel
    from derain.imageio import write_image
    from derain.metrics import psnr, ssim

    derainer = load_from_args(args)
    out_dir = Path(args.output)
    rows, pixels, elapsed = [], 0, 0.0
    print(f"{'sample':<12}{'rainy PSNR / SSIM':>20}{'derained PSNR / SSIM':>24}")
    for name, rainy, clean in samples(args.size, args.seed):
        start = time.perf_counter()
        derained = derainer(rainy)
        elapsed += time.perf_counter() - start
        pixels += rainy.shape[0] * rainy.shape[1]
        scores = (psnr(rainy, clean), ssim(rainy, clean), psnr(derained, clean), ssim(derained, clean))
        write_image(out_dir / f"{name}.png", panel(rainy, derained, clean))
        rows.append((name, *scores))
        print(f"{name:<12}{scores[0]:>12.2f} / {scores[1]:.3f}{scores[2]:>16.2f} / {scores[3]:.3f}")
    means = [sum(row[i] for row in rows) / len(rows) for i in range(1, 5)]
    print(f"{'mean':<12}{means[0]:>12.2f} / {means[1]:.3f}{means[2]:>16.2f} / {means[3]:.3f}")
    index = out_dir / "index.html"
    atomic_write(index, lambda tmp: Path(tmp).write_text(index_html(rows, means, elapsed, pixels)))
    print(f"derained {len(rows)} images ({pixels / 1e6:.2f} Mpixel) in {elapsed:.1f} s; open {index}")
    return 0


def index_html(rows, means, elapsed: float, pixels: int) -> str:
    figures = "\n".join(
        f'<figure><img src="{html.escape(name)}.png" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(name)}: rainy {p0:.2f} dB / {s0:.3f} → derained {p1:.2f} dB / {s1:.3f}"
        "</figcaption></figure>"
        for name, p0, s0, p1, s1 in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>derain demo</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}} figure{{margin:0 0 2em}}</style>
</head><body>
<h1>derain demo</h1>
<p>Each row: rainy | derained | clean. Scores are PSNR / SSIM on the Y channel (MATLAB protocol)
against the clean photo. Mean: rainy {means[0]:.2f} dB / {means[1]:.3f}, derained {means[2]:.2f} dB /
{means[3]:.3f}. Deraining took {elapsed:.1f} s for {pixels / 1e6:.2f} Mpixel.</p>
{figures}
</body></html>
"""
