"""The architecture race at equal CPU time (issue 15, item 4): each candidate trains from random weights
for the same wall-clock seconds on the same online rain mix, then is scored on the validation suite.

    python scripts/arch_race.py [--seconds 360] [--candidates mix default patch2 plain]
    python scripts/arch_race.py --steps mix=2620 default=4420 plain=4832   # 40 min each, at idle-core rates

`--steps` fixes each candidate's iterations instead of its clock, from rates measured on idle cores (e.g. the
20-minute race's iterations / 1200 s), so that other work on the machine cannot bias a long race.

Same data stream (RainMixDataset on the training photos, TRAIN_WEIGHTS, seed 0), batch 8 of 128², Adam
4e-4, clip 1.0, the Eq. 2 loss; with --seconds the cores should be otherwise idle. Writes
results/arch-race/summary.json and each AGLF-ViT candidate's model directory, and prints one markdown row
per candidate. Needs ../shared/data and the suite (`derain suite --model none`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from derain.archs import create_model
from derain.archs.plain_cnn import PlainCNN
from derain.config import load_model_config, preset_dict
from derain.data import RainMixDataset
from derain.data.datasets import to_tensor
from derain.data.families import HOLDOUT_SHARE
from derain.evaluation import markdown_table, write_json
from derain.hub import save_pretrained
from derain.losses import recon_loss
from derain.suite import score_suite, summarize
from derain.train.stages import training_photos

CANDIDATES = {
    "mix": lambda: create_model(load_model_config("configs/mix.yaml")),  # the shipped architecture
    "default": lambda: create_model(preset_dict("default")),  # patch 4, no detail path
    "patch2": lambda: create_model({**preset_dict("default"), "patch_size": 2}),
    "plain": lambda: PlainCNN(32, 8),  # the floor
}


def train_for(net: torch.nn.Module, dataset, seconds: float, batch: int, steps_cap: int | None = None
              ) -> tuple[int, float]:
    """Train until `seconds` have passed, or for exactly `steps_cap` iterations; (iterations, seconds taken)."""
    torch.manual_seed(0)
    loader = iter(DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=1))
    optimizer = torch.optim.Adam(net.parameters(), lr=4e-4)
    net.train()
    batch = next(loader)  # the clock starts once the loader worker is up
    steps, start = 0, time.perf_counter()
    while (steps < steps_cap) if steps_cap is not None else (time.perf_counter() - start < seconds):
        rainy, clean = batch
        loss = recon_loss(net(rainy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        steps += 1
        batch = next(loader)
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
    args = parser.parse_args()

    fixed = {name: int(n) for name, n in (item.split("=") for item in args.steps)}
    photos = training_photos([args.clean], HOLDOUT_SHARE)
    results, rows = {}, []
    for name in args.candidates:
        dataset = RainMixDataset(photos, crop=args.crop, seed=0, samples_per_epoch=10**6)
        net = CANDIDATES[name]()
        steps, took = train_for(net, dataset, args.seconds, args.batch, fixed.get(name))
        summary = summarize(score_suite(predictor(net), args.suite))
        if name != "plain":  # a model directory, for `derain gallery --model NAME=DIR`
            save_pretrained(net, args.out / name, race_iterations=steps)
        results[name] = {"iterations": steps, "seconds": took, "params": sum(p.numel() for p in net.parameters()),
                         "kpx_per_s": steps * args.batch * args.crop ** 2 / took / 1e3, "suite": summary}
        gains = {f: s["gain"] for f, s in summary.items() if s["gain"] is not None}
        rows.append([name, f"{results[name]['params']:,}", str(steps), f"{results[name]['kpx_per_s']:.0f}",
                     f"{gains['rain (all)']:+.2f}", f"{summary['none']['psnr']:.2f}",
                     " ".join(f"{f} {g:+.2f}" for f, g in gains.items() if f != "rain (all)")])
        print(rows[-1], flush=True)
        write_json(args.out / "summary.json", {"seconds": args.seconds, "steps": fixed, "batch": args.batch,
                                               "crop": args.crop, "candidates": results})
    print(markdown_table(["candidate", "params", "iterations", "kpx/s", "all rain dB", "none dB", "per family"],
                         rows))


if __name__ == "__main__":
    main()
