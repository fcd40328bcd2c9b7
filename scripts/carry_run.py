"""Carry a training run across machines as one file: its config, log, finished models and last checkpoint.

    python scripts/carry_run.py pack runs/v2 carry/v2.tar.gz      # at the end of a session (replaces the file)
    python scripts/carry_run.py unpack carry/v2.tar.gz runs/v2    # on a new machine, then train with --resume

TensorBoard events, generated data and the checkpoints of finished stages are left out; checkpoints load with
weights_only=True, so unpacking never unpickles code. Delete the carried file when the run is done.
"""
from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
from pathlib import Path

SKIP = ("tb", "data")


def pack(run: Path, out: Path) -> None:
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.relative_to(run).parts[0] not in SKIP
                   and not (p.name.startswith("ckpt-") and (p.parent / "done.json").is_file()))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".partial")
    os.close(fd)
    with tarfile.open(tmp, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f.relative_to(run).as_posix())
    os.replace(tmp, out)
    print(f"packed {len(files)} files of {run} into {out} ({out.stat().st_size / 1e6:.1f} MB)")


def unpack(archive: Path, run: Path) -> None:
    if run.exists() and any(run.iterdir()):
        raise SystemExit(f"{run}: exists and is not empty; unpack into a new folder")
    run.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(run, filter="data")
    print(f"unpacked {archive} into {run}; continue with: derain train CONFIG --out {run} --resume ...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.target)


if __name__ == "__main__":
    main()
