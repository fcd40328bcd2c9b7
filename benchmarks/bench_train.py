"""Training speed of each stage: iterations/s (forward, backward, Adam step) at the tiny and default presets.

    python benchmarks/bench_train.py [--presets tiny default] [--batch 4] [--crop 64] [--iters 5]
    python benchmarks/bench_train.py --presets configs/mix.yaml --stages scratch --batch 8 --crop 128 [--bf16] [--profile 3]
    python benchmarks/bench_train.py --presets configs/mix.yaml --stages scratch --batch 16 --crop 256 --device cuda [--bf16]

A preset may be a YAML file (a model config, or a training config's `model:`). Each cell gives it/s and,
in brackets, training kilo-pixel-passes per second (batch × crop² × it/s / 1000). --bf16 runs the
forward under bf16 autocast (on the CPU it pays off where the CPU has bf16 instructions; on CUDA it is
what `derain train` uses).

Each stage's module is the one `derain train` builds (derain.train.stages), fed random tensors, so the
numbers leave out data loading. The median (and range) over --iters timed iterations follows 2 warm-up
iterations; the last line gives the peak RSS of the whole run. On a CPU, malloc keeps freed memory, as
in `derain train` (derain.memory.keep_freed_memory).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from derain.archs import Encoder, ImageNet, RecogNet
from derain.config import load_model_config
from derain.losses import recog_loss, recon_loss
from derain.memory import keep_freed_memory
from derain.train.stages import Distillation, Supervised

WARMUP = 2


def stage_modules(preset: str) -> dict[str, torch.nn.Module]:
    cfg = load_model_config(preset)
    teachers = {"recog": RecogNet(cfg), "recon": ImageNet(cfg)}
    return {
        "recog": Supervised(RecogNet(cfg), recog_loss),
        "recon": Supervised(ImageNet(cfg), recon_loss),
        "distill": Distillation(Encoder(cfg), cfg.dim, teachers),
        "finetune": Supervised(ImageNet(cfg), recon_loss),
        "scratch": Supervised(ImageNet(cfg), recon_loss),
    }


def iterations_per_second(module: torch.nn.Module, batch: list[torch.Tensor], iters: int, bf16: bool = False,
                          device: str = "cpu", profile: int = 0) -> tuple[float, float, float]:
    """Median, slowest and fastest iterations per second; with `profile`, then prints where the time of
    that many more iterations goes (torch.profiler, the ops that take most of it themselves)."""
    module = module.to(device)
    batch = [None if t is None else t.to(device) for t in batch]
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4, fused=True)  # as derain train
    kind = torch.device(device).type
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)

    def step():
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
            loss = module(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()

    times = []
    for i in range(WARMUP + iters):
        sync()
        tic = time.perf_counter()
        step()
        if i >= WARMUP:
            times.append(time.perf_counter() - tic)
    if profile:
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if kind == "cuda" else [])
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(profile):
                step()
        key = "self_cuda_time_total" if kind == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15))
    return 1.0 / statistics.median(times), 1.0 / max(times), 1.0 / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (at least 5)")
    parser.add_argument("--stages", nargs="+", default=["recog", "recon", "distill", "finetune", "scratch"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [default: cpu]")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile N more iterations of each stage and print its 15 costliest ops")
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()  # as derain train does
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.crop, args.crop)
    batches = {"recog": [images, torch.randint(0, 2, (args.batch,)).float()],
               "recon": [images, images], "distill": [images, None], "finetune": [images, images],
               "scratch": [images, images]}
    table = {preset: {name: iterations_per_second(module, batches[name], max(args.iters, 5), args.bf16, args.device,
                                                  args.profile)
                      for name, module in stage_modules(preset).items() if name in args.stages}
             for preset in args.presets}
    pixels = args.batch * args.crop**2 / 1000
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    print(f"it/s (range) [kpx/s], batch {args.batch} of {args.crop}×{args.crop}, {where}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, median of {max(args.iters, 5)} after {WARMUP} warm-up iterations")
    print(f"{'stage':<10}" + "".join(f"{preset:>32}" for preset in args.presets))
    for name in args.stages:
        cells = (f"{m:.2f} ({lo:.2f}-{hi:.2f}) [{m * pixels:.0f}]"
                 for m, lo, hi in (table[preset][name] for preset in args.presets))
        print(f"{name:<10}" + "".join(f"{cell:>32}" for cell in cells))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
