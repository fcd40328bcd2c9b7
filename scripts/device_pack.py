"""Pack ../shared/data into `.device-data/` (git-ignored), small enough to travel to a lent GPU machine.

    python scripts/device_pack.py                 # then: bash scripts/device_train.sh v2 570 there

clean/: the photos that `data.holdout` trains on as JPEG (4:4:4, --quality), the held-out ones (the
validation suite's) as lossless PNGs of their central 384² crop, which is all `derain suite` reads of
them, so the suite built from .device-data is the same, bit for bit. `families.holdout` hashes the file
name with its suffix: a held-out photo keeps its name; a training photo keeps its stem and takes the
first JPEG suffix (.jpg, .jpeg, .JPG, ...) that the hash still leaves in training, or stays PNG if none
does. The split is checked against the originals' at the end.
real_rain/sirr100/: copied as is (JPEG already). Other files in .device-data (a carried run) are kept.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from derain.data.families import HOLDOUT_SHARE, holdout, in_holdout
from derain.data.layouts import list_images
from derain.imageio import read_image_uint8
from derain.suite import SUITE_CROP, center_crop

ROOT = Path(__file__).resolve().parent.parent
JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".Jpg", ".Jpeg")
LIMIT_MIB = 64  # what the device tool carries: working tree plus carried paths


def training_name(stem: str) -> str | None:
    """The first JPEG name for `stem` whose hash `holdout` leaves in training, if any."""
    return next((stem + s for s in JPEG_SUFFIXES if not in_holdout(stem + s, HOLDOUT_SHARE)), None)


def pack_clean(src: Path, dst: Path, quality: int) -> None:
    train, val = holdout(list_images(src))
    for f in val:
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(center_crop(read_image_uint8(f), SUITE_CROP)).save(out, optimize=True)
    for f in train:
        name = training_name(f.stem)
        out = dst / f.relative_to(src).with_name(name or f.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        if name:
            Image.fromarray(read_image_uint8(f)).save(out, "JPEG", quality=quality, subsampling=0, optimize=True)
        else:
            shutil.copyfile(f, out)


def check_split(src: Path, dst: Path) -> None:
    def split(root):
        return [sorted(p.relative_to(root).with_suffix("").as_posix() for p in part)
                for part in holdout(list_images(root))]
    if split(src) != split(dst):
        raise SystemExit(f"{dst}: the hold-out split differs from {src}'s")
    train, val = split(dst)
    print(f"hold-out split as for the originals: {len(train)} training photos, {len(val)} held out")


def mib(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / ".device-data")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the training photos [90]")
    args = parser.parse_args()
    clean, rainy = args.out / "clean", args.out / "real_rain" / "sirr100"
    for folder in (clean, rainy):
        shutil.rmtree(folder, ignore_errors=True)
    pack_clean(args.data / "clean", clean, args.quality)
    shutil.copytree(args.data / "real_rain" / "sirr100", rainy)
    check_split(args.data / "clean", clean)

    tree = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.split("\0")
    sizes = {"clean": mib(clean.rglob("*")), "sirr100": mib(rainy.rglob("*")),
             ".device-data": mib(args.out.rglob("*")), "working tree": mib(ROOT / p for p in tree if p)}
    print(", ".join(f"{k} {v:.1f} MiB" for k, v in sizes.items()))
    total = sizes[".device-data"] + sizes["working tree"]
    print(f"travels with carry [\".device-data\"]: {total:.1f} of {LIMIT_MIB} MiB")


if __name__ == "__main__":
    main()
