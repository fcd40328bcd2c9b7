"""`derain eval`: score a model, existing predictions, or unpaired real rain; write CSV, JSON, markdown."""
from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.run import MODEL_HELP, STRENGTH_HELP, TTA_HELP, rain_angle_option
from derain.errors import DerainError

EXAMPLES = """examples:
  derain eval --model bundled --data Datasets/test/Rain100L           # model outputs vs ground truth
  derain eval --data Datasets/test/Rain100L                           # the rainy inputs ("Input" row)
  derain eval --pred results/Rain100L --clean Datasets/test/Rain100L/target
  derain eval --rainy real_rain/ --model my-model                     # NIQE of inputs and outputs
"""


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="score a model or predictions (PSNR, SSIM, NIQE)",
        description="Score a model on a paired dataset, existing predictions against clean images "
                    "(matched by file stem), or unpaired real rain with NIQE. Writes scores.csv, "
                    "summary.json and summary.md. PSNR/SSIM follow the deraining papers' MATLAB "
                    "protocol (--protocol y) unless asked otherwise.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="PATH", help="paired dataset, any layout derain detects")
    source.add_argument("--pred", metavar="DIR", help="folder of predictions (needs --clean)")
    source.add_argument("--rainy", metavar="DIR", help="folder of unpaired rainy images (NIQE only)")
    p.add_argument("--clean", metavar="DIR", help="folder of ground-truth images for --pred")
    p.add_argument("--model", help=f"model to run on the inputs: {MODEL_HELP}")
    p.add_argument("--metrics", help="comma-separated: psnr, ssim, niqe "
                                     "[default: psnr,ssim; niqe with --rainy]")
    p.add_argument("--protocol", choices=("y", "rgb"), default="y",
                   help="y: MATLAB rgb2ycbcr Y (published numbers); rgb: colour channels [default: y]")
    p.add_argument("--niqe-params", metavar="FILE",
                   help="NIQE pristine model: modelparameters.mat or an npz [default: bundled]")
    p.add_argument("--save", metavar="DIR", type=Path, help="also write the model's outputs here as PNG")
    p.add_argument("--tta", action="store_true", help=f"with --model: {TTA_HELP}")
    p.add_argument("--strength", type=float, metavar="S", help=f"with --model: {STRENGTH_HELP}")
    p.add_argument("--scale", metavar="K", help="with --model: derain at 1/K of each image's size, as derain run "
                                                "--scale does [default: auto, 1 up to 1600 px on the long side]")
    p.add_argument("--rain-angle", type=rain_angle_option, metavar="DEG|auto",
                   help="with --model: turn each image for the model, as derain run --rain-angle does; 0 keeps "
                        "them upright [default: auto, as derain run]")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="report folder [default: results/eval-<name of the data folder>]")
    p.set_defaults(func=run)


def run(args) -> int:
    from derain import evaluation as ev

    _check_combination(args)
    metrics = ev.parse_metrics(args.metrics or ("niqe" if args.rainy else "psnr,ssim"))
    if args.rainy and set(metrics) - set(ev.NO_REFERENCE):
        raise DerainError(f"{args.rainy}: unpaired images have no ground truth; use --metrics niqe")
    niqe_model = ev.load_niqe_model(args.niqe_params) if "niqe" in metrics else None
    scale = args.scale or "auto"
    strength = 1.0 if args.strength is None else args.strength
    rain_angle = "auto" if args.rain_angle is None else args.rain_angle
    model = _load_model(args.model, args.tta, scale, strength, rain_angle) if args.model else None

    if args.data:
        from derain.data import list_pairs

        predict = ev.model_predictor(model, args.save) if model else None
        with_input = predict is not None and "psnr" in metrics
        rows = ev.score_pairs(list_pairs(args.data), metrics, args.protocol, predict, niqe_model, with_input)
    elif args.pred:
        rows = ev.score_predictions(ev.match_by_stem(args.pred, args.clean), metrics, args.protocol, niqe_model)
    else:
        rows = ev.score_unpaired(args.rainy, niqe_model, model, args.save)

    source = Path(args.data or args.pred or args.rainy)
    protocol = args.protocol if set(metrics) & set(ev.FULL_REFERENCE) else None
    summary = {
        "source": str(source),
        "mode": "paired" if args.data else "predictions" if args.pred else "unpaired",
        "model": args.model or ("none (rainy inputs scored)" if args.data else None),
        "scale": scale if args.model else None,
        "strength": strength if args.model else None,
        "rain_angle": rain_angle if args.model else None,
        "clean": args.clean,
        "images": len(rows),
        "protocol": protocol,
        "protocol_description": ev.PROTOCOL_DESCRIPTIONS.get(protocol),
        "niqe": (args.niqe_params or "bundled pristine model") if niqe_model else None,
        "mean": ev.mean_scores(rows),
    }
    if rows and "psnr_input" in rows[0]:
        summary["worse_than_input"] = ev.worse_than_input(rows)
    out = args.out or Path("results") / f"eval-{source.resolve().name}"
    ev.write_csv(out / "scores.csv", rows)
    ev.write_json(out / "summary.json", summary)
    ev.write_text(out / "summary.md", _markdown(summary, ev))
    _print_summary(summary, out, ev)
    return 0


def _check_combination(args) -> None:
    if args.pred and not args.clean:
        raise DerainError("--pred needs --clean DIR (the ground truth to match by file stem)")
    if args.clean and not args.pred:
        raise DerainError("--clean goes with --pred; for a dataset folder use --data")
    if args.pred and (args.model or args.save):
        raise DerainError("--pred scores existing predictions; --model and --save do not apply")
    if args.save and not args.model:
        raise DerainError("--save writes model outputs; it needs --model")
    if args.tta and not args.model:
        raise DerainError("--tta runs a model; it needs --model")
    if args.scale and not args.model:
        raise DerainError("--scale runs a model; it needs --model")
    if args.strength is not None and not args.model:
        raise DerainError("--strength runs a model; it needs --model")
    if args.rain_angle is not None and not args.model:
        raise DerainError("--rain-angle runs a model; it needs --model")


def _load_model(spec: str, tta: bool = False, scale: str = "auto", strength: float = 1.0,
                rain_angle: float | str | None = "auto"):
    import derain
    from derain.console import warnings_as_lines

    with warnings_as_lines():
        return derain.load(spec, tta=tta, scale=scale, strength=strength, rain_angle=rain_angle)


def _markdown(summary: dict, ev) -> str:
    means = summary["mean"]
    table = ev.markdown_table(["images"] + list(means),
                              [[str(summary["images"])] + [ev.format_score(k, v) for k, v in means.items()]])
    lines = [f"Scores of `{summary['source']}` ({summary['mode']}), model: {summary['model'] or 'none'}."]
    if summary["protocol"]:
        lines.append(f"Protocol `{summary['protocol']}`: {summary['protocol_description']}.")
    if summary["niqe"]:
        lines.append(f"{ev.NIQE_DESCRIPTION}; pristine model: {summary['niqe']}.")
    if "worse_than_input" in summary:
        lines.append(f"Worse than the rainy input (PSNR): {summary['worse_than_input']} of {summary['images']} images.")
        lines.append("`shift`: mean brightness of the output minus that of the clean image, in grey levels of Y "
                     "(`shift_input`: of the rainy input).")
    return "\n".join(lines) + "\n\n" + table


def _print_summary(summary: dict, out: Path, ev) -> None:
    print(f"derain eval: {summary['images']} images from {summary['source']} ({summary['mode']})")
    if summary["protocol"]:
        print(f"protocol: {summary['protocol']} ({summary['protocol_description']})")
    if summary["niqe"]:
        print(f"niqe: {summary['niqe']}")
    for metric, value in summary["mean"].items():
        unit = " dB" if metric.startswith("psnr") else " grey levels" if metric.startswith("shift") else ""
        print(f"  {metric:<12} {ev.format_score(metric, value)}{unit}")
    if "worse_than_input" in summary:
        print(f"  worse than the rainy input: {summary['worse_than_input']} of {summary['images']} images")
    print(f"wrote {out / 'scores.csv'}, {out / 'summary.json'}, {out / 'summary.md'}")
