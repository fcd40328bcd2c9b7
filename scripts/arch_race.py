"""The architecture race at equal CPU time (issue 15, item 4): each candidate trains from random weights
for the same wall-clock seconds on the same online rain mix, then is scored on the validation suite.

    python scripts/arch_race.py [--seconds 360] [--candidates mix default patch2 plain]
    python scripts/arch_race.py --steps mix=2620 default=4420 plain=4832   # 40 min each, at idle-core rates
    python scripts/arch_race.py --candidates mix plain --steps mix=11400 plain=15300 --bf16 --cosine --resume \
        --out results/arch-race-long   # session 48: the issue's budget, bf16, cosine lr
    python scripts/arch_race.py --candidates default patch2 --steps default=16660 patch2=5670 --bf16 --cosine \
        --resume --out results/arch-race-long   # session 49: the same time for the other AGLF-ViT variants

`--steps` fixes each candidate's iterations instead of its clock, from rates measured on idle cores (e.g. the
20-minute race's iterations / 1200 s), so that other work on the machine cannot bias a long race. A race with
`--steps` checkpoints each candidate every `--checkpoint-every` iterations (OUT/NAME/race/); `--resume` goes on
from there, on the same batches, so a killed or carried race ends as an unbroken one would. `--cosine` anneals
the lr from 4e-4 to 0 over the candidate's steps; `--bf16` trains under bf16 autocast where the CPU has bf16.

Same data stream (RainMixDataset on the training photos, TRAIN_WEIGHTS, seed 0), batch 8 of 128², Adam
4e-4, clip 1.0, the Eq. 2 loss; with --seconds the cores should be otherwise idle. Writes
OUT/summary.json (candidates of earlier calls kept) and each AGLF-ViT candidate's model directory, and prints
one markdown row per candidate. Needs ../shared/data and the suite (`derain suite --model none`).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from derain.archs import create_model
from derain.archs.plain_cnn import PlainCNN
from derain.config import load_model_config, preset_dict
from derain.data import RainMixDataset
from derain.data.datasets import to_tensor
from derain.data.families import HOLDOUT_SHARE
from derain.evaluation import markdown_table, write_json
from derain.hub import save_pretrained
from derain.inference import cpu_has_bf16
from derain.losses import recon_loss
from derain.suite import score_suite, summarize
from derain.train.rundir import load_checkpoint, save_checkpoint
from derain.train.stages import training_photos

CANDIDATES = {
    "mix": lambda: create_model(load_model_config("configs/mix.yaml")),  # the shipped architecture
    "default": lambda: create_model(preset_dict("default")),  # patch 4, no detail path
    "patch2": lambda: create_model({**preset_dict("default"), "patch_size": 2}),
    "plain": lambda: PlainCNN(32, 8),  # the floor
}


def train_for(net: torch.nn.Module, dataset, seconds: float, batch: int, steps_cap: int | None = None,
              state_dir: Path | None = None, resume: bool = False, checkpoint_every: int = 500,
              cosine: bool = False, bf16: bool = False) -> tuple[int, float]:
    """Train until `seconds` have passed, or for exactly `steps_cap` iterations; (iterations, seconds taken).
    With `state_dir` (and `steps_cap`) a checkpoint every `checkpoint_every` iterations; `resume` starts from it."""
    if (state_dir is not None or cosine) and steps_cap is None:
        raise ValueError("checkpoints and --cosine need a fixed number of steps (--steps)")
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=4e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda step: 0.5 * (1 + math.cos(math.pi * step / steps_cap))) if cosine else (lambda step: 1.0))
    steps, took = 0, 0.0
    if state_dir is not None and (checkpoint := load_checkpoint(state_dir)) is not None:
        if not resume:
            raise SystemExit(f"{state_dir}: a race checkpoint is there; add --resume, or remove it to start over")
        weights, state = checkpoint
        net.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        steps, took = state["steps"], state["seconds"]
    # batch k is always dataset items k·batch ... k·batch + batch − 1, wherever the race resumed
    stream = Subset(dataset, range(steps * batch, len(dataset)))
    loader = iter(DataLoader(stream, batch_size=batch, shuffle=False, num_workers=1))
    net.train()
    pair = next(loader)  # the clock starts once the loader worker is up
    start = time.perf_counter() - took
    while (steps < steps_cap) if steps_cap is not None else (time.perf_counter() - start < seconds):
        rainy, clean = pair
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = recon_loss(net(rainy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        steps += 1
        if state_dir is not None and (steps % checkpoint_every == 0 or steps == steps_cap):
            save_checkpoint(state_dir, steps, net.state_dict(),
                            {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                             "steps": steps, "seconds": time.perf_counter() - start})
            print(f"  {steps} / {steps_cap} iterations, loss {loss.item():.5f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        if steps_cap is None or steps < steps_cap:
            pair = next(loader)
    return steps, time.perf_counter() - start


def predictor(net: torch.nn.Module):
    net.eval()

    @torch.no_grad()
    def run(rainy: np.ndarray) -> np.ndarray:
        x = to_tensor(rainy / np.float32(255))[None]
        y = net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        return np.round(y * 255).astype(np.uint8)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=360.0, help="training time per candidate [360]")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--steps", nargs="+", default=[], metavar="NAME=N",
                        help="train NAME for N iterations instead of --seconds")
    parser.add_argument("--clean", default="../shared/data/clean")
    parser.add_argument("--suite", default="results/suite-data")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("results/arch-race"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CPUs with AVX-512 BF16 or AMX)")
    parser.add_argument("--cosine", action="store_true", help="lr cosine-annealed to 0 over each candidate's --steps")
    parser.add_argument("--resume", action="store_true", help="go on from OUT/NAME/race/ (races with --steps)")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    args = parser.parse_args()
    if args.bf16 and not cpu_has_bf16():
        parser.error("--bf16: this CPU has no bf16 instructions (AVX-512 BF16, AMX)")

    fixed = {name: int(n) for name, n in (item.split("=") for item in args.steps)}
    photos = training_photos([args.clean], HOLDOUT_SHARE)
    summary_file = args.out / "summary.json"
    earlier = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    results, rows = dict(earlier.get("candidates", {})), []
    fixed_all = {**earlier.get("steps", {}), **fixed}
    for name in args.candidates:
        dataset = RainMixDataset(photos, crop=args.crop, seed=0, samples_per_epoch=10**6)
        net = CANDIDATES[name]()
        steps, took = train_for(net, dataset, args.seconds, args.batch, fixed.get(name),
                                state_dir=args.out / name / "race" if name in fixed else None, resume=args.resume,
                                checkpoint_every=args.checkpoint_every, cosine=args.cosine, bf16=args.bf16)
        summary = summarize(score_suite(predictor(net), args.suite))
        if name != "plain":  # a model directory, for `derain gallery --model NAME=DIR`
            save_pretrained(net, args.out / name, race_iterations=steps)
        results[name] = {"iterations": steps, "seconds": took, "params": sum(p.numel() for p in net.parameters()),
                         "kpx_per_s": steps * args.batch * args.crop ** 2 / took / 1e3, "suite": summary,
                         "bf16": args.bf16, "cosine": args.cosine}
        gains = {f: s["gain"] for f, s in summary.items() if s["gain"] is not None}
        rows.append([name, f"{results[name]['params']:,}", str(steps), f"{results[name]['kpx_per_s']:.0f}",
                     f"{gains['rain (all)']:+.2f}", f"{summary['none']['psnr']:.2f}",
                     " ".join(f"{f} {g:+.2f}" for f, g in gains.items() if f != "rain (all)")])
        print(rows[-1], flush=True)
        write_json(summary_file, {"seconds": args.seconds, "steps": fixed_all, "batch": args.batch,
                                  "crop": args.crop, "candidates": results})
    print(markdown_table(["candidate", "params", "iterations", "kpx/s", "all rain dB", "none dB", "per family"],
                         rows))


if __name__ == "__main__":
    main()
