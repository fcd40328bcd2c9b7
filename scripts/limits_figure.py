"""docs/figures/limits.jpg: input | output of the bundled model, two photos per limits set.

    python scripts/limits_figure.py /tmp/limits/light /tmp/limits/heavy /tmp/limits/camera -o docs/figures/limits.jpg

Each set is a `derain synth` output folder (MODEL_CARD.md, Limits); its first two rainy images, in sorted order.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import derain
from derain.figures import contact_sheet, fit, panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--per-set", type=int, default=2)
    args = parser.parse_args()
    model = derain.load(device="cpu")
    panels = []
    for folder in args.sets:
        for path in sorted((folder / "rainy").iterdir())[: args.per_set]:
            rainy = fit(np.asarray(Image.open(path).convert("RGB")), 384)
            panels.append(panel(rainy, model(rainy)))
    Image.fromarray(contact_sheet(panels, 900)).save(args.out, quality=88)


if __name__ == "__main__":
    main()
