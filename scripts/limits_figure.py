"""docs/figures/limits.jpg: input | output of the bundled model, two photos per limits set.

    python scripts/limits_figure.py /tmp/limits/light /tmp/limits/heavy /tmp/limits/camera -o docs/figures/limits.jpg
    python scripts/limits_figure.py /tmp/limits/wind --pick 0 5 4 --upright -o docs/figures/wind.jpg  # input | upright | auto

Each set is a `derain synth` output folder (MODEL_CARD.md, Limits); its first two rainy images, in sorted order.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import derain
from derain.data.layouts import list_images
from derain.figures import contact_sheet, fit, panel
from derain.imageio import read_image_uint8, write_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--per-set", type=int, default=2)
    parser.add_argument("--pick", type=int, nargs="+", metavar="I", help="these images of each set (sorted order) instead")
    parser.add_argument("--upright", action="store_true",
                        help="a middle column derained with --rain-angle 0, beside the default (--rain-angle auto)")
    args = parser.parse_args()
    model, upright = derain.load(device="cpu"), derain.load(device="cpu", rain_angle=0)
    panels = []
    for folder in args.sets:
        images = list_images(folder / "rainy")
        for path in [images[i] for i in args.pick] if args.pick else images[: args.per_set]:
            rainy = fit(read_image_uint8(path), 384)
            panels.append(panel(rainy, *([upright(rainy)] if args.upright else []), model(rainy)))
    write_image(args.out, contact_sheet(panels, 900), quality=88)


if __name__ == "__main__":
    main()
