"""`derain run INPUT... [-o OUTDIR]`: derain photos, files, folders or globs, keeping relative paths,
formats and metadata. Options are checked before any photo; a bad file is reported on one line and
the batch goes on. The output folder is never read as input, and `OUTDIR/.derain-run.json` records
the options each output was made with, so a rerun can say when they differ."""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from derain.errors import DerainError

DEFAULT_MAX_PIXELS = 2 * 89_478_485  # twice Pillow's warning limit: where Pillow itself refuses
FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "tiff": ".tif", "tif": ".tif",
                   "webp": ".webp", "bmp": ".bmp", "avif": ".avif", "heic": ".heic"}
DEFAULT_OUTDIR = "derained"  # -o when not given: a folder in the current directory
SETTINGS_FILE = ".derain-run.json"  # in OUTDIR: the options each output was made with
MODEL_HELP = ("'bundled' (the shipped model), a model directory (config.json + model.safetensors) "
              "or a training run directory (its model/)")
EXAMPLES = """examples:
  derain run photo.jpg                             # writes derained/photo.jpg
  derain run photos/ -o derained/                  # the images directly inside photos/
  derain run trip/ -r -o derained/ --threads 1     # the whole tree, on one CPU thread
  derain run storm.jpg -o derained/ --rain-angle -55   # rain blown 55 degrees over, tops leaning left (\\)
  derain run storm.jpg -o derained/ --rain-angle 0     # keep the photo upright (no trial pass)
"""


def register(sub) -> None:
    p = sub.add_parser("run", help="derain photos (files, folders or globs) into an output folder",
                       description="Derain photos into OUTDIR, keeping relative paths, formats, EXIF "
                                   "and ICC profiles. Existing outputs are skipped (and named) unless "
                                   "--overwrite; inputs are never written over, and nothing under OUTDIR "
                                   "is read as input. Exit status 1 if any file failed, 2 if the run "
                                   "could not start (bad option, no input image found).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", default=DEFAULT_OUTDIR, metavar="OUTDIR",
                   help=f"output folder [default: {DEFAULT_OUTDIR}/ in the current directory]")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    p.add_argument("--model", metavar="MODEL", help=f"{MODEL_HELP} [default: bundled]")
    p.add_argument("--format", choices=sorted(FORMAT_SUFFIXES), help="write this format instead of the input's")
    p.add_argument("--quality", type=int, help="JPEG/WebP/AVIF/HEIC quality [default: a JPEG from a JPEG keeps that "
                        "file's own quantization tables and chroma subsampling, a lossless WebP stays lossless; "
                        "otherwise 95]")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_inference_options(p)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images as possible decompression bombs [default: {DEFAULT_MAX_PIXELS}]")
    p.set_defaults(func=run)


TTA_HELP = "average the 4 flips that keep rain's direction (4× slower)"
STRENGTH_HELP = ("the model's thresholds divided by S: below 1 gentler (fewer changes to fine bright detail, a "
                 "little less rain taken); above 1 more of the model's change passes, which on real photos mostly "
                 "darkens (measured in docs/inference.md, 'Strength') [default: 1]")


def add_inference_options(p) -> None:
    """Device, precision, threads and tiling options, shared with `derain demo` and `derain gallery`."""
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                   help="fp16/bf16 autocast on a GPU; bf16 also on a CPU with bf16 instructions (AVX-512 BF16, "
                        "AMX) [default: fp32]")
    p.add_argument("--threads", type=int, help="CPU threads for torch [default: the cores this process may use, "
                                               "less those other processes keep busy]")
    p.add_argument("--tile", type=int, help="tile side in pixels; 0 = never tile [default: from --max-memory]")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels [default: 32]")
    p.add_argument("--max-memory", metavar="SIZE", help="activation memory budget that picks the tile size, "
                                                        "e.g. 2GB [default: 1GiB]")
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    p.add_argument("--strength", type=float, default=1.0, metavar="S", help=STRENGTH_HELP)
    p.add_argument("--rain-angle", type=rain_angle_option, default="auto", metavar="DEG|auto",
                   help="rain blown more than about 35 degrees off the vertical: its lean in degrees (positive: "
                        "the top to the right, like /; within 15 of the truth is enough). The photo is turned so the rain runs "
                        "vertically, as the model knows it. 'auto': turned only where the model finds far more rain "
                        "turned than upright (a trial pass on a 384 px square); 0: every photo upright [default: auto]")
    p.add_argument("--scale", default="auto", metavar="K",
                   help="derain at 1/K of the photo's size and enlarge only the change, for rain K times wider than "
                        "the model learnt (full-size phone or camera photos); the output keeps the photo's size and "
                        "detail. 'auto': 1 up to 1600 px on the long side, above it K = long side / 1600 "
                        "[default: auto]")


def rain_angle_option(text: str) -> float | str:
    """--rain-angle's value: 'auto' or degrees (range-checked by derain.load, before any photo)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give degrees from vertical or 'auto'") from None


def load_from_args(args):
    """A Derainer built from the model and inference options."""
    return load_with_options(args.model, args)


def load_with_options(model: str | None, args):
    """A Derainer of `model` (anything derain.load accepts; None: the bundled model) built with the
    inference options in `args` (see `add_inference_options`), all checked here, before any image.
    Warnings (tiles so small that overlap dominates) become `derain: warning:` lines."""
    import torch

    from derain.api import load
    from derain.console import warnings_as_lines
    from derain.inference import default_threads

    if args.threads is not None and args.threads < 1:
        raise DerainError(f"--threads {args.threads}: give 1 or more")
    torch.set_num_threads(args.threads or default_threads())
    with warnings_as_lines():
        return load(model, device=args.device, tile=args.tile, overlap=args.overlap, tta=args.tta,
                    precision=args.precision, max_memory=args.max_memory, rain_angle=args.rain_angle,
                    scale=args.scale, strength=args.strength)


@dataclass
class Job:
    source: Path
    target: Path | None = None
    error: str | None = None  # set when the input could not be planned


@dataclass
class Plan:
    jobs: list[Job]
    left_out: list[Path] = field(default_factory=list)  # images found under the output folder


def plan(inputs: list[str], outdir: Path, recursive: bool, suffix: str | None) -> Plan:
    """One job per input image; outputs keep the path relative to the folder or glob base. Images
    that folders and globs find under `outdir` are left out: outputs are never inputs."""
    from derain.photo import write_problem

    result = Plan([])
    for spec in inputs:
        for source, base in _expand(spec, recursive, outdir, result.left_out):
            if base is None:  # an error message for this spec
                result.jobs.append(Job(Path(spec), error=str(source)))
                continue
            target = outdir / source.relative_to(base)
            target = target.with_suffix(suffix) if suffix else target
            problem = write_problem(target)  # an unwritable format fails before, not after, the deraining
            result.jobs.append(Job(source, target, error=f"{source}: {problem}" if problem else None))
    _refuse_clashes(result.jobs)
    return result


def _expand(spec: str, recursive: bool, outdir: Path, left_out: list[Path]):
    """(file, base) pairs for one INPUT; (message, None) if it names nothing usable. Files found
    under `outdir` go to `left_out` instead."""
    from derain.data import list_images
    from derain.imageio import is_image_file

    def outside(files):
        kept = []
        for f in files:
            (left_out if _is_within(f, outdir) else kept).append(f)
        return kept

    path = Path(spec)
    if glob.has_magic(spec):
        base = Path(*path.parts[:next(i for i, part in enumerate(path.parts) if glob.has_magic(part))])
        files = []
        for match in sorted(Path(m) for m in glob.glob(spec, recursive=True)):
            if match.is_dir():
                files += list_images(match, recursive)
            elif is_image_file(match):
                files.append(match)
        files = outside(files)
        if not files:
            yield f"{spec}: no image files match", None
        yield from ((f, base) for f in files)
    elif path.is_dir():
        if _is_within(path, outdir):
            yield f"{spec}: folder is the output folder or inside it; choose another -o", None
            return
        files = outside(list_images(path, recursive))
        if not files:
            yield _nothing_in(path, recursive, outdir), None
        yield from ((f, path) for f in files)
    elif path.exists() or path.is_symlink():
        yield path, path.parent
    else:
        yield f"{spec}: file not found", None


def _nothing_in(folder: Path, recursive: bool, outdir: Path) -> str:
    """Why a folder gave no input: no images at all, or only in sub-folders (then: add -r)."""
    from derain.data import list_images
    from derain.imageio import IMAGE_EXTENSIONS

    below = list_images(folder)
    outside = [f for f in below if not _is_within(f, outdir)]
    if outside and not recursive:
        return f"{folder}: no image files directly inside, {len(outside)} in sub-folders; add -r to derain them"
    if below:
        return f"{folder}: no image files outside the output folder {outdir}"
    return f"{folder}: no image files ({' '.join(IMAGE_EXTENSIONS)})"


def _is_within(path: Path, folder: Path) -> bool:
    """True if `path` is `folder` or lies below it (symlinks resolved)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


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


def check_output_folder(outdir: Path) -> None:
    """-o must be a folder, or a path where one can be made: checked before any model work."""
    existing = next(folder for folder in (outdir, *outdir.parents) if folder.exists())
    if not existing.is_dir():
        where = "is a file" if existing == outdir else f"cannot be made: {existing} is a file"
        raise DerainError(f"-o {outdir}: {where}; -o takes an output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DerainError(f"-o {outdir}: permission denied (cannot write in {existing})")


def derain_file(derainer, job: Job, quality: int | None) -> float:
    """Derain one photo into its target; returns the working scale it was derained at (and leaves the angle
    `--rain-angle auto` turned it by in `derainer.found_angle`)."""
    from derain.api import FloatRangeError
    from derain.photo import Photo, read_photo, write_photo

    photo = read_photo(job.source)
    try:
        pixels = derainer(photo.pixels)
    except FloatRangeError as exc:
        raise DerainError(f"{job.source}: float pixels reach {exc.top:g}; derain reads float images as "
                          "values in [0, 1]") from None
    write_photo(job.target, Photo(pixels, photo.mode, photo.metadata), quality=quality)
    return derainer.scale_for(*photo.pixels.shape[:2])


def run(args) -> int:
    from PIL import Image

    from derain.console import some_names

    if args.quality is not None and not 1 <= args.quality <= 100:
        raise DerainError(f"--quality {args.quality}: give 1 to 100")
    outdir = Path(args.output)
    check_output_folder(outdir)
    suffix = FORMAT_SUFFIXES[args.format] if args.format else None
    if suffix:
        from derain.imageio import codec_problem

        if problem := codec_problem(suffix):  # it would fail every output, so it fails before any photo
            raise DerainError(f"--format {args.format}: {problem}")
    planned = plan(args.inputs, outdir, args.recursive, suffix)
    if not any(job.error is None for job in planned.jobs):
        problems = [job.error for job in planned.jobs]
        raise DerainError(problems[0] if len(problems) == 1 else f"nothing to derain: {'; '.join(problems)}")
    derainer = load_from_args(args)
    if planned.left_out:
        print(f"derain: left out {len(planned.left_out)} image(s) under the output folder {outdir} "
              f"(outputs are never inputs): {some_names(planned.left_out)}", file=sys.stderr)
    settings = OutputSettings(outdir, output_options(args))
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, args.max_pixels
    try:
        counts = run_jobs(derainer, planned.jobs, args.overwrite, args.quality, settings, outdir)
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    return 1 if counts["failed"] else 0


def run_jobs(derainer, jobs: list[Job], overwrite: bool, quality: int | None,
             settings: OutputSettings | None = None, outdir: Path | None = None) -> dict:
    """Derain each job with a progress bar; one line per failure; skipped outputs named; the summary
    at the end."""
    import torch
    from tqdm import tqdm

    from derain.console import InnerBar, progress_bar, some_names
    from derain.inference import SCALE_SIDE

    counts = {"done": 0, "skipped": 0, "failed": 0}
    skipped, shrunk, turned = [], [], []
    start = time.perf_counter()
    derainer.progress = tiles = InnerBar("tile")  # a photo of many tiles shows them go by
    try:
        for job in progress_bar(jobs, unit="img", desc="derain", disable=None):
            if job.error is None and job.target.exists() and not overwrite:
                skipped.append(job.target)
                continue
            tiles.desc = job.source.name
            try:
                if job.error:
                    raise DerainError(job.error)
                if derain_file(derainer, job, quality) > 1 and derainer.scale == "auto":
                    shrunk.append(job.source)
                if derainer.found_angle is not None:
                    turned.append(f"{job.source} ({derainer.found_angle:+g}°)")
                counts["done"] += 1
                if settings:
                    settings.wrote(job.target)
            except (DerainError, MemoryError, torch.OutOfMemoryError) as exc:
                message = (str(exc) if isinstance(exc, DerainError)
                           else f"{job.source}: out of memory; try a smaller --tile")
                tqdm.write(f"derain: error: {message}", file=sys.stderr)
                counts["failed"] += 1
            finally:
                tiles.close()
    finally:
        derainer.progress = None
        if settings:
            settings.save()
    counts["skipped"] = len(skipped)
    if skipped:
        _report_skipped(skipped, settings)
    if shrunk:
        print(f"derain: {len(shrunk)} photo(s) longer than {SCALE_SIDE} px were derained at {SCALE_SIDE} px on the long "
              f"side, the change enlarged back (--scale auto; --scale 1 for full size): {some_names(shrunk)}",
              file=sys.stderr)
    if turned:
        print(f"derain: {len(turned)} photo(s) looked like rain blown off the vertical and were derained turned "
              f"(--rain-angle auto; --rain-angle 0 keeps them upright): {some_names(turned)}", file=sys.stderr)
    print(f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
          f"in {time.perf_counter() - start:.1f} s" + (f"; outputs in {outdir}" if outdir and counts["done"] else ""))
    return counts


def _report_skipped(skipped: list[Path], settings: OutputSettings | None) -> None:
    from derain.console import some_names, warn

    print(f"derain: skipped {len(skipped)} existing output(s): {some_names(skipped)}; --overwrite replaces them",
          file=sys.stderr)
    changed = settings.changed(skipped) if settings else {}
    if changed:
        differences = sorted({key for keys in changed.values() for key in keys})
        warn(f"{len(changed)} skipped output(s) were made with different options ({', '.join(differences)}): "
             f"{some_names(changed)}; --overwrite redoes them with this run's")


# ---------------------------------------------------------------- the options each output was made with

LATER_OPTIONS = {"strength": 1.0}  # options recorded since a later version: what a record without them was made with


def output_options(args) -> dict:
    """The options that change what `derain run` writes: the model (by the hash of its weights, and its
    config: the same weights behind another threshold write other pixels), self-ensemble, tiling, precision,
    the rain angle, the working scale and the strength."""
    from derain.api import check_scale
    from derain.hub import WEIGHTS_NAME, read_config, resolve_model

    model = resolve_model(args.model)
    digest = hashlib.sha256()
    with open(model / WEIGHTS_NAME, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return {"model": str(model.resolve()), "weights_sha256": digest.hexdigest(),
            "model_config": read_config(model).get("model"), "tta": args.tta,
            "tile": args.tile, "overlap": args.overlap, "max_memory": args.max_memory,
            "precision": args.precision or "fp32", "rain_angle": args.rain_angle,
            "scale": check_scale(args.scale), "strength": args.strength}


class OutputSettings:
    """OUTDIR/.derain-run.json: the options of each output, as {"options": [...], "outputs": {relative
    path: index into options}}. Outputs compare by weights, not by where the model was."""

    def __init__(self, outdir: Path, options: dict):
        self.outdir, self.path, self.options = outdir, outdir / SETTINGS_FILE, options
        self.recorded, self.outputs = [], {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.recorded = [entry if isinstance(entry, dict) else {} for entry in data["options"]]
                self.outputs = {key: index for key, index in dict(data["outputs"]).items()
                                if isinstance(index, int) and 0 <= index < len(self.recorded)}
            except (ValueError, KeyError, TypeError):
                from derain.console import warn

                warn(f"{self.path}: unreadable, so skipped outputs cannot be checked against this run's options; "
                     "it is rewritten")
        self.dirty = False

    def _key(self, target: Path) -> str:
        return target.relative_to(self.outdir).as_posix()

    def changed(self, targets: list[Path]) -> dict[str, list[str]]:
        """{output: the option names that differ} for outputs recorded with other options."""
        changed = {}
        for target in targets:
            index = self.outputs.get(self._key(target))
            if index is None:
                continue  # not made by derain run, or by one that kept no record
            recorded = self.recorded[index]
            differ = [key for key in self.options
                      if key != "model" and recorded.get(key, LATER_OPTIONS.get(key)) != self.options[key]]
            if differ:
                names = {"weights_sha256": "model", "model_config": "model config"}
                changed[str(target)] = [names.get(key, key) for key in differ]
        return changed

    def wrote(self, target: Path) -> None:
        if self.options not in self.recorded:
            self.recorded.append(self.options)
        self.outputs[self._key(target)] = self.recorded.index(self.options)
        self.dirty = True

    def save(self) -> None:
        """Write the record (atomically), keeping only the option sets some output still uses."""
        from derain.console import warn
        from derain.evaluation import write_json

        if not self.dirty:
            return
        used = sorted(set(self.outputs.values()))
        renumber = {old: new for new, old in enumerate(used)}
        data = {"options": [self.recorded[old] for old in used],
                "outputs": {key: renumber[index] for key, index in sorted(self.outputs.items())}}
        try:
            write_json(self.path, data)
        except OSError as exc:
            warn(f"{self.path}: cannot record the options of the outputs ({exc.strerror or exc})")
