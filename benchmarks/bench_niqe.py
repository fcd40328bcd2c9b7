"""Time NIQE on CPU at a few image sizes: median of repeated runs, printed as a markdown table.

    python benchmarks/bench_niqe.py [--runs 7]

The test image is scikit-image's astronaut photo, tiled or cropped to each size.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from skimage import data

from derain.metrics import bundled_model
from derain.metrics.niqe import PATCH_SIZE

SIZES = ((256, 256), (512, 512), (1024, 1024), (1200, 1600))


def image_of_size(height: int, width: int) -> np.ndarray:
    photo = data.astronaut()
    reps = (-(-height // photo.shape[0]), -(-width // photo.shape[1]), 1)
    return np.tile(photo, reps)[:height, :width]


def time_runs(function, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per size (at least 5)")
    runs = max(5, parser.parse_args().runs)
    model = bundled_model()
    print(f"NIQE on CPU, median of {runs} runs (after one warm-up run)\n")
    print("| size (HxW) | patches | median ms | min ms |")
    print("|---|---|---|---|")
    for height, width in SIZES:
        image = image_of_size(height, width)
        model.score(image)  # warm-up
        times = time_runs(lambda: model.score(image), runs)
        patches = (height // PATCH_SIZE) * (width // PATCH_SIZE)
        print(f"| {height}x{width} | {patches} | {1000 * statistics.median(times):.1f} | {1000 * min(times):.1f} |")


if __name__ == "__main__":
    main()
