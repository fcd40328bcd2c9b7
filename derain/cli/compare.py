"""`derain compare`: several models on several datasets, as a paper-style PSNR / SSIM table."""
from __future__ import annotations

from pathlib import Path

from derain.cli.run import MODEL_HELP

INPUT_ROW = "Input"


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="PSNR/SSIM table of several models on several datasets",
        description="Score every model on every paired dataset and write a Table 1-style markdown "
                    "table (best of each column in bold), compare.json and per-image scores.csv. "
                    f"A model is {MODEL_HELP}; or a folder of predictions holding one "
                    "subfolder per dataset NAME with files named like the dataset's images.")
    p.add_argument("--models", nargs="+", required=True, metavar="NAME=DIR", help="models or prediction folders")
    p.add_argument("--data", nargs="+", required=True, metavar="NAME=PATH", help="paired datasets, any layout")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for compare.md, compare.json, scores.csv")
    p.add_argument("--protocol", choices=("y", "rgb"), default="y",
                   help="y: MATLAB rgb2ycbcr Y (published numbers); rgb: colour channels [default: y]")
    p.add_argument("--with-input", action="store_true", help=f"add an '{INPUT_ROW}' row: the rainy inputs scored")
    p.set_defaults(func=run)


def run(args) -> int:
    from derain import evaluation as ev
    from derain.data import list_pairs
    from derain.errors import DerainError

    models = ev.parse_named(args.models, "--models")
    data_paths = ev.parse_named(args.data, "--data")
    datasets = {name: list_pairs(path) for name, path in data_paths.items()}
    if args.with_input and INPUT_ROW in models:
        raise DerainError(f"--models: the name {INPUT_ROW!r} is taken by --with-input")

    rows, summaries = [], {}
    for model_name, source in ([(INPUT_ROW, None)] if args.with_input else []) + list(models.items()):
        predictors = _predictors(source, datasets)
        summaries[model_name] = {}
        for data_name, pairs in datasets.items():
            scores = ev.score_pairs(pairs, list(ev.FULL_REFERENCE), args.protocol, predictors(data_name))
            summaries[model_name][data_name] = ev.mean_scores(scores) | {"images": len(scores)}
            rows += [{"model": model_name, "dataset": data_name, **row} for row in scores]

    table = ev.compare_markdown(summaries, args.protocol)
    report = {
        "protocol": args.protocol,
        "protocol_description": ev.PROTOCOL_DESCRIPTIONS[args.protocol],
        "models": ({INPUT_ROW: "rainy inputs"} if args.with_input else {}) | models,
        "datasets": data_paths,
        "results": summaries,
    }
    ev.write_text(args.output / "compare.md", table)
    ev.write_json(args.output / "compare.json", report)
    ev.write_csv(args.output / "scores.csv", rows)
    print(table, end="")
    print(f"wrote {args.output}/compare.md, compare.json, scores.csv")
    return 0


def _predictors(source: str | None, datasets: dict):
    """data name -> predictor: none for the input row, files for a prediction folder, else the model."""
    from derain import evaluation as ev

    if source is None:
        return lambda data_name: None
    folder = Path(source)
    if folder.is_dir() and all((folder / name).is_dir() for name in datasets):
        return lambda data_name: ev.folder_predictor(folder / data_name, datasets[data_name])
    import derain

    model = derain.load(source)
    return lambda data_name: ev.model_predictor(model)
