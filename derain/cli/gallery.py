"""`derain gallery INPUT_DIR --model NAME=MODEL ... -o OUT_DIR`: a side-by-side qualitative gallery
of real rainy photos (input | model 1 | model 2 ...) with NIQE per column, for model cards.
A bad file is reported on one line and the others go on."""
from __future__ import annotations

import html
import sys
from pathlib import Path
from urllib.parse import quote

from derain.cli.run import MODEL_HELP, add_inference_options, load_with_options
from derain.errors import DerainError

INPUT_COLUMN = "input"
DEFAULT_MODEL = "derain=bundled"
CONTACT_SHEET = "contact_sheet.png"
CONTACT_ROWS = 4
CONTACT_WIDTH = 1200


def register(sub) -> None:
    p = sub.add_parser(
        "gallery", help="input | model ... panels of real rainy photos with NIQE, for model cards",
        description="Downscale the first N images of INPUT_DIR (sorted by name), derain each with every "
                    "--model, and write OUT_DIR/<stem>.png panels (input | model 1 | model 2 ...), "
                    f"index.html, summary.json (NIQE per image and column, lower is better) and "
                    f"{CONTACT_SHEET} (the first {CONTACT_ROWS} panels, {CONTACT_WIDTH} px wide, stacked). "
                    "Exit status 1 if any file failed.")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of rainy images (files directly inside it)")
    p.add_argument("--model", action="append", metavar="NAME=MODEL",
                   help=f"a column: its NAME and MODEL, {MODEL_HELP}; "
                        f"repeat for more columns, in order [default: {DEFAULT_MODEL}]")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--n", type=int, default=12, help="use the first N images by name; 0 = all [default: 12]")
    p.add_argument("--max-side", type=int, default=512, metavar="PIXELS",
                   help="downscale (Lanczos) so the longer side is at most this; 0 = keep [default: 512]")
    p.add_argument("--crop", type=int, default=0, metavar="PIXELS",
                   help="instead of downscaling, the central PIXELS×PIXELS window at 100%% [default: off]")
    p.add_argument("--diff", action="store_true",
                   help="after each model, a column of |output − input| × 4: what the model changed")
    add_inference_options(p)
    p.set_defaults(func=run)


def parse_models(items: list[str] | None) -> dict[str, str]:
    """``--model NAME=MODEL`` options -> {name: MODEL as given (see derain.hub.resolve_model)}."""
    from derain.evaluation import parse_named

    models = parse_named(items or [DEFAULT_MODEL], "--model")
    if INPUT_COLUMN in models:
        raise DerainError(f"--model: the name {INPUT_COLUMN!r} is taken by the input column")
    return models


def plan(files: list[Path], out_dir: Path) -> list[tuple[Path, Path, str | None]]:
    """(input, panel path, problem or None) per file: one panel per stem, none named like the sheet."""
    jobs, seen = [], {}
    for path in files:
        target = out_dir / f"{path.stem}.png"
        problem = None
        if target.name == CONTACT_SHEET:
            problem = f"{path}: its panel would be {target}, the contact sheet; rename the file"
        elif target.name in seen:
            problem = f"{path}: its panel {target} is also the panel of {seen[target.name]}"
        else:
            seen[target.name] = path
        jobs.append((path, target, problem))
    return jobs


def run(args) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from derain import evaluation as ev
    from derain.console import progress_bar
    from derain.hub import BUNDLED_NAMES
    from derain.data import list_images
    from derain.figures import contact_sheet, fit, panel
    from derain.imageio import IMAGE_EXTENSIONS, read_image_uint8, write_image
    from derain.suite import center_crop

    if args.n < 0:
        raise DerainError(f"--n {args.n}: give a count of images, or 0 for all")
    if args.crop < 0:
        raise DerainError(f"--crop {args.crop}: give a size in pixels, or 0 for no crop")
    if args.max_side < 0:
        raise DerainError(f"--max-side {args.max_side}: give a size in pixels, or 0 to keep the size")
    models = parse_models(args.model)
    input_dir, out_dir = Path(args.input_dir), Path(args.output)
    files = list_images(input_dir, recursive=False)
    if not files:
        raise DerainError(f"{input_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if out_dir.resolve() == input_dir.resolve():
        raise DerainError(f"{out_dir}: the output folder is INPUT_DIR; choose another -o")
    files = files[:args.n or None]
    derainers = {name: load_with_options(spec, args) for name, spec in models.items()}
    niqe_model = ev.load_niqe_model(None)
    columns = [INPUT_COLUMN, *models]

    rows, panels, failed = [], [], []
    for path, target, problem in progress_bar(plan(files, out_dir), unit="img", desc="gallery", disable=None):
        try:
            if problem:
                raise DerainError(problem)
            image = read_image_uint8(path)
            image = center_crop(image, args.crop) if args.crop else fit(image, args.max_side)
            images = [image] + [derainer(image) for derainer in derainers.values()]
            niqe = {column: ev.niqe_score(im, niqe_model, str(path)) for column, im in zip(columns, images)}
            figure = panel(*with_differences(images) if args.diff else images)
            write_image(target, figure)
        except (DerainError, MemoryError, torch.OutOfMemoryError) as exc:
            message = str(exc) if isinstance(exc, DerainError) else f"{path}: out of memory; try a smaller --tile"
            tqdm.write(f"derain: error: {message}", file=sys.stderr)
            failed.append(message)
            continue
        rows.append({"image": path.stem, "file": path.name, "width": image.shape[1], "height": image.shape[0],
                     "niqe": niqe})
        if len(panels) < CONTACT_ROWS:
            panels.append(figure)

    if rows:
        means = {column: float(np.mean([row["niqe"][column] for row in rows])) for column in columns}
        sources = {name: "bundled model" if spec in BUNDLED_NAMES else spec for name, spec in models.items()}
        write_image(out_dir / CONTACT_SHEET, contact_sheet(panels, CONTACT_WIDTH))
        ev.write_text(out_dir / "index.html", index_html(rows, columns, means, sources))
        ev.write_json(out_dir / "summary.json", {
            "input_dir": str(input_dir),
            "models": sources,
            "columns": columns,
            "max_side": args.max_side,
            "crop": args.crop,
            "diff": args.diff,
            "niqe": f"{ev.NIQE_DESCRIPTION}; pristine model: bundled",
            "images": rows,
            "mean_niqe": means,
            "failed": failed,
        })
        print("mean NIQE (lower is better): " + ", ".join(f"{c} {means[c]:.2f}" for c in columns))
    print(f"made {len(rows)} panels, failed {len(failed)}"
          + (f"; open {out_dir / 'index.html'}" if rows else ""))
    return 1 if failed else 0


def with_differences(images: list) -> list:
    """input, model 1, |model 1 − input| × 4, model 2, ...: what each model changed, amplified."""
    import numpy as np

    out = [images[0]]
    for image in images[1:]:
        change = np.abs(image.astype(np.int16) - images[0].astype(np.int16)) * 4
        out += [image, np.clip(change, 0, 255).astype(np.uint8)]
    return out


def caption(niqe: dict[str, float], columns: list[str]) -> str:
    """``input NIQE 5.43 → derain 5.10 → other 4.98``."""
    return " → ".join(f"{'input NIQE' if column == INPUT_COLUMN else column} {niqe[column]:.2f}"
                      for column in columns)


def index_html(rows: list[dict], columns: list[str], means: dict[str, float], sources: dict[str, str]) -> str:
    from derain.evaluation import NIQE_DESCRIPTION

    esc = html.escape
    figures = "\n".join(
        f'<figure><img src="{esc(quote(row["image"] + ".png"))}" alt="{esc(row["file"])}">'
        f'<figcaption>{esc(row["file"])}: {esc(caption(row["niqe"], columns))}</figcaption></figure>'
        for row in rows)
    models = ", ".join(f"{esc(name)} ({esc(source)})" for name, source in sources.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>derain gallery</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}} figure{{margin:0 0 2em}}</style>
</head><body>
<h1>derain gallery</h1>
<p>Columns, left to right: the input, then the models in order: {models}.
Captions give the NIQE of each column; lower NIQE is better ({esc(NIQE_DESCRIPTION)}).</p>
<p>Mean NIQE over {len(rows)} images: {esc(caption(means, columns))}.</p>
{figures}
</body></html>
"""
