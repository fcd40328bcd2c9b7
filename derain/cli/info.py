"""`derain info`: parameter counts and GFLOPs of one 256×256 forward pass."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="parameter counts and GFLOPs of a network config",
                       description="Print each part's parameter count and the GFLOPs of one 256×256 "
                                   "forward pass, counted by torch.utils.flop_counter.")
    p.add_argument("--config", default="default", help="preset (tiny, default, paper) or a YAML file [default: default]")
    p.add_argument("--size", type=int, default=256, help="square input side for the FLOP count [default: 256]")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops(model, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, model.config.in_chans, size, size))
    return counter.get_total_flops() / 1e9


def run(args) -> int:
    from derain.archs import create_model
    from derain.config import load_model_config

    cfg = load_model_config(args.config)
    derain_net, recog_net = create_model(cfg).eval(), create_model(cfg, head="recog").eval()
    parts = {
        "encoder": count(derain_net.encoder),
        "d_recog": count(recog_net.decoder),
        "d_recon": count(derain_net.decoder),
        "d_dr": count(derain_net.decoder),
    }
    gflops = flops(derain_net, args.size)
    report = {
        "config": args.config,
        "model": cfg.to_dict(),
        "params": parts["encoder"] + parts["d_dr"],  # the deraining network E_stu + D_dr
        "params_by_part": parts,
        f"gflops_{args.size}": round(gflops, 3),
        f"gflops_{args.size}_recog": round(flops(recog_net, args.size), 3),
        "gflops_per_megapixel": round(gflops * 1e6 / args.size**2, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"config {args.config}: " + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    for name, n in parts.items():
        print(f"  {name:<10} {n:>12,} params")
    print(f"  {'E + D_dr':<10} {report['params']:>12,} params")
    print(f"  {gflops:.2f} GFLOPs per {args.size}×{args.size} image (E + D_dr), "
          f"{report['gflops_per_megapixel']} GFLOPs per megapixel")
    return 0
