"""`derain synth`: make rainy/clean pairs from a folder of clean photos."""
from __future__ import annotations

import argparse

from derain.errors import DerainError

# Streak parameters that can be fixed (0.03) or given as a range drawn per image (0.01,0.05).
RAIN_OPTIONS = {
    "layers": "streak layers per image",
    "density": "fraction of the image covered by streaks",
    "length": "streak length in pixels",
    "angle": "degrees from vertical, positive leans right (/); a range that starts below 0 needs '=': --angle=-20,20",
    "width": "streak width in pixels",
    "brightness": "streak intensity (linear) or opacity (camera), 0..1",
    "veil": "haze: share of the image replaced by the airlight, 0..1",
    "sheet": "linear only: peak intensity of a rain sheet (smooth, uneven glow along the rain), 0..1",
    "opacity": "photoshop only: opacity of the Screen layer, 0..1",
    "speck": "photoshop only: σ in pixels of the blur that sizes the noise specks",
}


def value_or_range(text: str) -> float | tuple[float, float]:
    """'0.03' -> 0.03, '0.01,0.05' -> (0.01, 0.05)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH with LOW <= HIGH, got {text!r}")


def family_weights(text: str) -> dict[str, float]:
    """'light=1,none=0.2' -> {'light': 1.0, 'none': 0.2}."""
    weights = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT, got {item!r}") from None
    return weights


def register(sub) -> None:
    p = sub.add_parser(
        "synth", help="synthesise rainy/clean pairs from clean photos",
        description="Add synthetic rain to the images under CLEAN_DIR (searched recursively) and write "
                    "OUT/rainy/NAME.png|jpg, OUT/clean/NAME.png and OUT/meta.json with every image's "
                    "parameters. Pair i uses clean image i mod count, whole or as a random --crop. "
                    "The same arguments give byte-identical files.")
    p.add_argument("clean_dir", metavar="CLEAN_DIR", help="folder of clean images")
    p.add_argument("-o", "--out", required=True, metavar="OUT",
                   help="output folder: new, empty, or written by an earlier synth run (replaced)")
    p.add_argument("--model", choices=("linear", "photoshop", "camera", "mix"), default="linear",
                   help="linear: streaks added or screened onto the sRGB image; photoshop: noise, Levels, "
                        "Motion Blur and Screen (DDN-style); camera: rain in linear radiance with defocus, veil, "
                        "sensor noise and JPEG; mix: each pair from a rain family drawn by --families "
                        "[default: linear]")
    p.add_argument("--families", type=family_weights, default=None, metavar="NAME=W,...",
                   help="mix only: family weights, e.g. light=1,heavy=1,none=0.2 [default: "
                        "light .25, heavy .15, photoshop .2, haze .05, camera .1, none .25]")
    p.add_argument("--bank", nargs="+", default=(), metavar="PHOTO|DIR",
                   help="mix only: real rainy photos (or folders of them) whose streaks the 'real' family "
                        "harvests and puts on the clean images (docs/datasets.md, \"Real rain, harvested\")")
    p.add_argument("--n", type=int, default=None, help="number of pairs [default: one per clean image]")
    p.add_argument("--seed", type=int, default=0, help="random seed [default: 0]")
    p.add_argument("--crop", type=int, default=None, metavar="SIZE",
                   help="use a random SIZE×SIZE crop of each clean image instead of the whole image")
    for name, text in RAIN_OPTIONS.items():
        p.add_argument(f"--{name}", type=value_or_range, default=None, metavar="X|LOW,HIGH",
                       help=f"{text} [default: the model's range, see docs/datasets.md]")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from derain.data.synthesis import synth_folder

    params = {name: getattr(args, name) for name in RAIN_OPTIONS if getattr(args, name) is not None}
    if isinstance(params.get("layers"), float):
        params["layers"] = int(params["layers"])
    if (args.families or args.bank) and args.model != "mix":
        raise DerainError("--families and --bank go with --model mix")
    meta = synth_folder(args.clean_dir, args.out, args.model, n=args.n, seed=args.seed, crop=args.crop,
                        params=params, progress=not args.no_progress, families=args.families, bank=args.bank)
    print(f"wrote {meta.parent}/rainy, {meta.parent}/clean and {meta}")
    return 0
