"""docs/figures/limits.jpg: input | output of the bundled model, two photos per limits set.

    python scripts/limits_figure.py /tmp/limits/light /tmp/limits/heavy /tmp/limits/camera -o docs/figures/limits.jpg

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
    args = parser.parse_args()
    model = derain.load(device="cpu")
    panels = []
    for folder in args.sets:
        for path in list_images(folder / "rainy")[: args.per_set]:
            rainy = fit(read_image_uint8(path), 384)
            panels.append(panel(rainy, model(rainy)))
    write_image(args.out, contact_sheet(panels, 900), quality=88)


if __name__ == "__main__":
    main()
