"""How far tiled inference of the bundled model is from one pass, in grey levels.

    python scripts/tiling_error.py [--size 1200] [--tiles auto 512]

The input is scikit-image's astronaut, resized to size×size (no download).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage import data, transform

from derain.api import Derainer, load_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--tiles", nargs="+", default=["auto", "512"])
    args = parser.parse_args()
    img = (transform.resize(data.astronaut(), (args.size, args.size), order=3) * 255).round().astype(np.uint8)
    net, cpu = load_network(), torch.device("cpu")  # loaded once, run with each tiling
    one_pass = Derainer(net, cpu, tile=0, scale=1)(img).astype(int)
    for tile in args.tiles:
        out = Derainer(net, cpu, tile=None if tile == "auto" else int(tile), scale=1)(img).astype(int)
        diff = np.abs(out - one_pass)
        print(f"tile {tile}: max {diff.max()} grey levels, mean {diff.mean():.3f}")


if __name__ == "__main__":
    main()
