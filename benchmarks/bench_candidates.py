"""The architecture candidates at equal cost (issue: patch size, detail path, the plain-CNN floor):
training pixel-passes per second (forward, backward, Adam step with the Eq. 2 loss) and the time of one
1-megapixel inference.

    python benchmarks/bench_candidates.py [--batch 8] [--crop 64] [--iters 6] [--threads 2]

Random weights and tensors, so data loading is left out. Medians after 2 warm-up iterations.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from derain.archs import create_model
from derain.archs.plain_cnn import PlainCNN
from derain.config import preset_dict
from derain.losses import recon_loss

CANDIDATES = {
    "default (patch 4)": {},
    "default + detail 16": {"detail_dim": 16},
    "default + detail 24": {"detail_dim": 24},
    "patch 2": {"patch_size": 2},
}


def build(name: str) -> torch.nn.Module:
    if name == "plain CNN 8x32":
        return PlainCNN(32, 8)
    return create_model({**preset_dict("default"), **CANDIDATES[name]})


def train_rate(net: torch.nn.Module, batch: int, crop: int, iters: int) -> float:
    x, y = torch.rand(batch, 3, crop, crop), torch.rand(batch, 3, crop, crop)
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    times = []
    for i in range(2 + iters):
        tic = time.perf_counter()
        loss = recon_loss(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - tic)
    return batch * crop * crop / statistics.median(times)


@torch.no_grad()
def infer_seconds(net: torch.nn.Module, repeats: int = 3) -> float:
    img = torch.rand(1, 3, 1000, 1000)
    net.eval()(img)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        net(img)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.threads} threads; training batch {args.batch} of {args.crop}²")
    print(f"{'candidate':<22}{'params':>9}{'train kpx/s':>13}{'1 MP infer s':>14}")
    for name in [*CANDIDATES, "plain CNN 8x32"]:
        net = build(name)
        params = sum(p.numel() for p in net.parameters())
        rate = train_rate(net.train(), args.batch, args.crop, args.iters)
        print(f"{name:<22}{params / 1e3:>8.0f}k{rate / 1e3:>13.0f}{infer_seconds(net):>14.2f}", flush=True)


if __name__ == "__main__":
    main()
