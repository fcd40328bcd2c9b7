"""`derain suite`: score a model on the validation suite, one synthetic set per rain family."""
from __future__ import annotations

import argparse
from pathlib import Path

from derain.cli.run import STRENGTH_HELP, TTA_HELP, rain_angle_option

EXAMPLES = """examples:
  derain suite                                   # the bundled model on ../shared/data/clean's held-out photos
  derain suite --model runs/mix/scratch/best     # a training run's best checkpoint
  derain suite --model none                      # the rainy inputs only (the suite's difficulty)
"""


def register(sub) -> None:
    p = sub.add_parser(
        "suite", help="score a model per rain family on held-out photos (the validation suite)",
        description="Build (once, deterministically from --seed) one synthetic validation set per rain family "
                    "(light, heavy, photoshop, haze, camera, dense, wind, none, drizzle) from the clean photos that "
                    "training holds out (data.holdout), then report per family: input and output Y-PSNR/SSIM, "
                    "the gain, the share of images made worse and the mean brightness shift. Model and recipe "
                    "choices are made here; test sets are only reported.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled",
                   help="'bundled' (the shipped model), a model directory, a training run directory, or 'none' "
                        "to score the rainy inputs [default: bundled]")
    p.add_argument("--clean", default="../shared/data/clean", metavar="DIR",
                   help="clean photos, searched recursively [default: ../shared/data/clean]")
    p.add_argument("--dir", type=Path, default=Path("results/suite-data"), metavar="DIR",
                   help="where the suite's images are built and reused [default: results/suite-data]")
    p.add_argument("--seed", type=int, default=0, help="rain seed [default: 0]")
    p.add_argument("--crop", type=int, default=384, help="central crop of each photo, pixels [default: 384]")
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    p.add_argument("--rain-angle", type=rain_angle_option, default="auto", metavar="DEG|auto",
                   help="turn every photo by DEG for the model, as derain run --rain-angle does (what it costs where "
                        "the rain is upright, and on clean photos); 0 keeps them upright [default: auto, as derain run]")
    p.add_argument("--strength", type=float, default=1.0, metavar="S", help=STRENGTH_HELP)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="report folder [default: results/suite-<model folder name>[-tta][-turnedDEG][-strengthS]]")
    p.set_defaults(func=run)


def run(args) -> int:
    import derain
    from derain import evaluation as ev
    from derain.console import warnings_as_lines
    from derain.errors import DerainError
    from derain.suite import NO_RAIN_FLOOR_DB, ensure_suite, made_worse, score_suite, summarize, summary_table

    if (args.tta or args.rain_angle != "auto" or args.strength != 1) and args.model == "none":
        raise DerainError("--tta, --rain-angle and --strength run a model; they do not apply to --model none")
    suite_dir = ensure_suite(args.clean, args.dir, seed=args.seed, crop=args.crop)
    with warnings_as_lines():
        model = None if args.model == "none" else derain.load(args.model, tta=args.tta, rain_angle=args.rain_angle,
                                                              strength=args.strength)
    rows = score_suite(model, suite_dir)
    summary = summarize(rows)
    turned = "" if args.rain_angle == "auto" else f"-turned{args.rain_angle:g}"
    stronger = "" if args.strength == 1 else f"-strength{args.strength:g}"
    out = args.out or Path("results") / f"suite-{Path(args.model).name}{'-tta' if args.tta else ''}{turned}{stronger}"
    ev.write_csv(out / "scores.csv", rows)
    ev.write_json(out / "summary.json",
                  {"model": args.model, "tta": args.tta, "rain_angle": args.rain_angle, "strength": args.strength,
                   "suite": str(suite_dir), "families": summary})
    table = summary_table(summary)
    ev.write_text(out / "summary.md", f"Validation suite `{suite_dir}`, model `{args.model}`.\n\n{table}")
    print(table)
    failed = made_worse(rows)
    for family in sorted({r["family"] for r in failed}):
        names = [f"{r['image']} ({r['margin']:+.2f} dB)" for r in failed if r["family"] == family]
        bar = f"below {NO_RAIN_FLOOR_DB:g} dB" if family == "none" else "worse than the input"
        print(f"{family}, {bar}: " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else ""))
    print(f"wrote {out / 'scores.csv'}, {out / 'summary.json'}, {out / 'summary.md'}")
    return 0
