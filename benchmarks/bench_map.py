"""Seconds the bundled model's threshold map takes on real photos (`derain.inference.streak_threshold`).

The map is the photo's rain angle (FFTs on its central 1024²) and its rain layer (grey-scale morphology after
turning the rain upright). By default the photos are the 15 `choice` photos of `sirr100`
(`scripts/sirr100_split.csv`). Each round times the map of every photo once; the SHA-256 over the maps lets
two versions of the code be checked for identical output.

    python benchmarks/bench_map.py                           # 2 threads, 3 rounds, the choice photos
    python benchmarks/bench_map.py photos/*.jpg --rounds 5   # your own photos
    cd OLD_CHECKOUT && PYTHONPATH=. python /path/to/bench_map.py --data /path/to/shared/data   # an older version
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def choice_photos(data: Path) -> list[Path]:
    with open(ROOT / "scripts" / "sirr100_split.csv") as f:
        return [data / "real_rain" / "sirr100" / row[0] for row in csv.reader(f) if len(row) > 1 and row[1] == "choice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path, help="default: sirr100's choice photos")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    import derain
    from derain.imageio import read_image_uint8
    from derain.inference import streak_threshold

    torch.set_num_threads(args.threads)
    config = derain.load().config
    photos = args.photos or choice_photos(args.data)
    images = [torch.from_numpy(read_image_uint8(p).copy()).permute(2, 0, 1)[None].float() / 255 for p in photos]
    megapixels = sum(x.shape[-2] * x.shape[-1] for x in images) / 1e6
    for r in range(args.rounds):
        digest, start = hashlib.sha256(), time.perf_counter()
        for x in images:
            digest.update(streak_threshold(config, x).numpy().tobytes())
        print(f"round {r + 1}: {len(images)} photos, {megapixels:.1f} MP, map {time.perf_counter() - start:.2f} s, "
              f"maps sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
