"""`derain train CONFIG.yaml`: the TTL pipeline (paper Fig. 3) into a run directory. See docs/training.md."""
from __future__ import annotations

import os
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train the TTL pipeline from a YAML config",
        description="Train recog (Eq. 1) and recon (Eq. 2) teachers, distill them into a student (Eq. 3-5), "
                    "fine-tune it on synthetic pairs, and train the same network from scratch (V2). "
                    "Multi-GPU: torchrun --nproc_per_node N -m derain train CONFIG.yaml.")
    p.add_argument("config", help="training config YAML, e.g. configs/tiny.yaml")
    p.add_argument("--out", help="run directory [default: runs/<config name>]")
    p.add_argument("--stages", nargs="+", metavar="STAGE",
                   help="run only these of recog, recon, distill, finetune, scratch [default: the config's pipeline]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key, VALUE in YAML; repeatable. Table 3 ablation: "
                        '--set "stages.distill.teachers=[recog]"')
    p.add_argument("--resume", action="store_true",
                   help="continue an unfinished stage from its last checkpoint (finished stages are always skipped)")
    p.set_defaults(func=run)


def run(args) -> int:
    from derain.train.pipeline import train

    out = Path(args.out or Path("runs") / Path(args.config).stem)
    result = train(args.config, out, stages=args.stages, resume=args.resume,
                   overrides=args.overrides)
    if os.environ.get("RANK", "0") == "0" and result.model_dir("finetune").is_dir():
        print(f"derain train: the deraining model is in {result.model_dir('finetune')}")
    return 0
