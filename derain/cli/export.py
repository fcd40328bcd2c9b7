"""`derain export [MODEL] --onnx out.onnx`: an ONNX graph with dynamic batch, height and width."""
from __future__ import annotations

from derain.cli.run import MODEL_HELP


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)",
                       description="Write the deraining network as ONNX: input 'image' N×3×H×W float32 in "
                                   "[0, 1], any H and W; output 'derained', the same shape. Sizes that are "
                                   "not multiples of patch × window are edge-padded inside the graph "
                                   "(see docs/inference.md). A model with shrink_streaks (the bundled one) "
                                   "also takes 'threshold', N×1×H×W: D_dr's threshold per pixel, from "
                                   "derain.inference.streak_threshold.")
    p.add_argument("model", nargs="?", metavar="MODEL", help=f"{MODEL_HELP} [default: bundled]")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset [default: 18]")
    p.set_defaults(func=run)


def run(args) -> int:
    from derain.api import load_network
    from derain.export import export_onnx

    net = load_network(args.model)
    path = export_onnx(net, args.onnx, opset=args.opset)
    extra = ", 'threshold' N×1×H×W (derain.inference.streak_threshold)" if net.config.shrink_streaks else ""
    print(f"wrote {path}: input 'image' N×3×H×W float32 in [0, 1]{extra}, output 'derained'")
    return 0
