"""`derain run INPUT... -o OUTDIR`: derain photos, files, folders or globs, keeping relative paths,
formats and metadata. A bad file is reported on one line and the batch goes on."""
from __future__ import annotations

import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from derain.errors import DerainError

DEFAULT_MAX_PIXELS = 2 * 89_478_485  # twice Pillow's warning limit: where Pillow itself refuses
FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "tiff": ".tif", "tif": ".tif",
                   "webp": ".webp", "bmp": ".bmp"}


def register(sub) -> None:
    p = sub.add_parser("run", help="derain photos (files, folders or globs) into an output folder",
                       description="Derain photos into OUTDIR, keeping relative paths, formats, EXIF "
                                   "and ICC profiles. Existing outputs are skipped unless --overwrite; "
                                   "inputs are never written over. Exit status 1 if any file failed.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    p.add_argument("--model", metavar="DIR", help="model directory (config.json + model.safetensors) "
                                                  "[default: the bundled model]")
    p.add_argument("--format", choices=sorted(FORMAT_SUFFIXES), help="write this format instead of the input's")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality [default: 95]")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_inference_options(p)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as possible decompression bombs [default: {DEFAULT_MAX_PIXELS}]")
    p.set_defaults(func=run)


def add_inference_options(p) -> None:
    """Device, precision, threads and tiling options, shared with `derain demo` and `derain gallery`."""
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="fp16/bf16 autocast on a GPU [default: fp32]")
    p.add_argument("--threads", type=int, help="CPU threads for torch [default: torch's choice]")
    p.add_argument("--tile", type=int, help="tile side in pixels; 0 = never tile [default: from --max-memory]")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels [default: 32]")
    p.add_argument("--max-memory", metavar="SIZE", help="activation memory budget that picks the tile size, "
                                                        "e.g. 2GB [default: 1GiB]")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8× slower)")


def load_from_args(args):
    """A Derainer built from the model and inference options."""
    return load_with_options(args.model, args)


def load_with_options(model: str | None, args):
    """A Derainer of `model` (anything derain.load accepts; None: the bundled model) built with the
    inference options in `args` (see `add_inference_options`)."""
    import torch

    from derain.api import load

    if args.threads:
        torch.set_num_threads(args.threads)
    return load(model, device=args.device, tile=args.tile, overlap=args.overlap, tta=args.tta,
                precision=args.precision, max_memory=args.max_memory)


@dataclass
class Job:
    source: Path
    target: Path | None = None
    error: str | None = None  # set when the input could not be planned


def plan(inputs: list[str], outdir: Path, recursive: bool, suffix: str | None) -> list[Job]:
    """One job per input image; outputs keep the path relative to the folder or glob base."""
    jobs = []
    for spec in inputs:
        for source, base in _expand(spec, recursive):
            if base is None:  # an error message for this spec
                jobs.append(Job(Path(spec), error=str(source)))
                continue
            target = outdir / source.relative_to(base)
            jobs.append(Job(source, target.with_suffix(suffix) if suffix else target))
    return _refuse_clashes(jobs)


def _expand(spec: str, recursive: bool):
    """(file, base) pairs for one INPUT; (message, None) if it names nothing usable."""
    from derain.imageio import is_image_file

    path = Path(spec)
    if glob.has_magic(spec):
        base = Path(*path.parts[:next(i for i, part in enumerate(path.parts) if glob.has_magic(part))])
        files = []
        for match in sorted(Path(m) for m in glob.glob(spec, recursive=True)):
            if match.is_dir():
                files += [f for f, _ in _expand(str(match), recursive)]
            elif is_image_file(match):
                files.append(match)
        if not files:
            yield f"{spec}: no image files match", None
        yield from ((f, base) for f in files)
    elif path.is_dir():
        pattern = "**/*" if recursive else "*"
        yield from ((f, path) for f in sorted(path.glob(pattern))
                    if f.is_file() and is_image_file(f) and not f.name.startswith("."))
    elif path.exists() or path.is_symlink():
        yield path, path.parent
    else:
        yield f"{spec}: file not found", None


def _refuse_clashes(jobs: list[Job]) -> list[Job]:
    """Never write over an input, and never write two inputs to one output."""
    inputs = {os.path.realpath(j.source) for j in jobs if j.error is None}
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.error:
            continue
        target = os.path.realpath(job.target)
        if target in inputs:
            job.error = f"{job.source}: output {job.target} would overwrite an input; choose another -o"
        elif target in seen:
            job.error = f"{job.source}: output {job.target} is also the output of {seen[target]}"
        else:
            seen[target] = job.source
    return jobs


def derain_file(derainer, job: Job, quality: int) -> None:
    from derain.photo import Photo, read_photo, write_photo

    photo = read_photo(job.source)
    write_photo(job.target, Photo(derainer(photo.pixels), photo.mode, photo.metadata), quality=quality)


def run(args) -> int:
    from PIL import Image

    derainer = load_from_args(args)
    suffix = FORMAT_SUFFIXES[args.format] if args.format else None
    jobs = plan(args.inputs, Path(args.output), args.recursive, suffix)
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, args.max_pixels
    try:
        counts = run_jobs(derainer, jobs, args.overwrite, args.quality)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    return 1 if counts["failed"] else 0


def run_jobs(derainer, jobs: list[Job], overwrite: bool, quality: int) -> dict:
    """Derain each job with a progress bar; one line per failure; the summary at the end."""
    import torch
    from tqdm import tqdm

    counts = {"done": 0, "skipped": 0, "failed": 0}
    start = time.perf_counter()
    for job in tqdm(jobs, unit="img", desc="derain", disable=None, file=sys.stderr):
        if job.error is None and job.target.exists() and not overwrite:
            counts["skipped"] += 1
            continue
        try:
            if job.error:
                raise DerainError(job.error)
            derain_file(derainer, job, quality)
            counts["done"] += 1
        except (DerainError, MemoryError, torch.OutOfMemoryError) as exc:
            message = str(exc) if isinstance(exc, DerainError) else f"{job.source}: out of memory; try a smaller --tile"
            tqdm.write(f"derain: error: {message}", file=sys.stderr)
            counts["failed"] += 1
    print(f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
          f"in {time.perf_counter() - start:.1f} s")
    return counts
