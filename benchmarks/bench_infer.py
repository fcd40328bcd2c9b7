"""Inference speed and peak memory of `derain.load()(image)` at 0.25, 1 and 8.3 megapixels.

Each size runs in its own subprocess, so that `ru_maxrss` (the process's peak resident set) belongs
to that size alone. The model is the bundled one if it is installed, else the `default` preset
with random weights (the speed and memory are the same). Tiling is automatic, from the memory
budget (1 GiB of activations, tiles of at most 1024 px on the CPU, unless --max-memory or --tile is given).
Each size is timed --reps times after a warm-up call on the same image; the table gives the median
and the range.

    python benchmarks/bench_infer.py                   # 2 threads, 5 repetitions, as on the reference machine
    python benchmarks/bench_infer.py --threads 4 --max-memory 512MB
    python benchmarks/bench_infer.py --precision bf16  # a CPU with bf16 instructions (AVX-512 BF16, AMX)
    python benchmarks/bench_infer.py --device cuda [--precision bf16]   # a GPU: peak GPU memory instead of RSS
    python benchmarks/bench_infer.py --scale auto      # as derain run does by default: photos over 1600 px derained smaller
    python benchmarks/bench_infer.py --malloc-default  # glibc's malloc as a program gets it, not as derain run sets it
    python benchmarks/bench_infer.py --rain-angle 0    # every photo upright: without --rain-angle auto's trial pass
    python benchmarks/bench_infer.py --model runs/NAME --sizes 1   # another model, at 1 MP only

--scale defaults to 1 here (the network on every pixel, the figures the README has always given), where
`derain run` defaults to auto. --rain-angle defaults to auto, as in `derain run` (session 46 on).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from derain.cli.run import rain_angle_option

SIZES = {"0.25 MP": (500, 500), "1 MP": (1000, 1000), "8.3 MP (3840×2160)": (2160, 3840)}


def worker(height: int, width: int, args) -> dict:
    import numpy as np
    import torch

    import derain
    from derain.api import Derainer, check_scale
    from derain.archs import create_model
    from derain.errors import DerainError
    from derain.inference import (align_tiling, autocast_dtype, choose_tile, parse_bytes, select_device,
                                  working_size)
    from derain.memory import keep_freed_memory

    torch.set_num_threads(args.threads)
    if not args.malloc_default:
        keep_freed_memory()  # as the derain command does (derain.memory)
    max_memory = parse_bytes(args.max_memory) if args.max_memory else None
    try:
        model = derain.load(args.model, device=args.device, tile=args.tile, max_memory=max_memory, precision=args.precision,
                            rain_angle=args.rain_angle, scale=args.scale)
        source = args.model
    except DerainError:
        if args.model != "bundled":
            raise
        device = select_device(args.device)
        net = create_model("default").eval().to(device)
        model = Derainer(net, device, tile=args.tile, max_memory=max_memory, autocast=autocast_dtype(args.precision, device),
                         rain_angle=args.rain_angle, scale=check_scale(args.scale))
        source = "default preset, random weights"
    gpu = model.device.type == "cuda"
    model(np.zeros((64, 64, 3), np.uint8))  # first-call set-up is not part of the timing
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model(image)  # warm-up at this size
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        model(image)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    tile, overlap = align_tiling(model.config, args.tile, model.overlap)
    scale = model.scale_for(height, width)
    work_h, work_w = working_size((height, width), scale)
    return {
        "model": source, "scale": scale,
        "tile": choose_tile(model.config, work_h, work_w, tile, overlap, max_memory,  # as Derainer.derain_rgb picks it
                            dtype_bytes=4 if model.autocast is None else 2, on_cpu=model.device.type == "cpu"),
        "seconds": seconds, "min_s": min(times), "max_s": max(times),
        "mpixel_per_s": height * width / 1e6 / seconds,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto [default: cpu]")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="fp16/bf16 autocast on a GPU; bf16 on a CPU that has it")
    parser.add_argument("--tile", type=int, help="tile side; default: from the memory budget")
    parser.add_argument("--max-memory", help="activation budget, e.g. 512MB [default: 1GiB]")
    parser.add_argument("--rain-angle", type=rain_angle_option, default="auto",
                        help="as derain run --rain-angle: auto (a trial pass decides), DEG (turned) or 0 (upright) [default: auto]")
    parser.add_argument("--scale", default="1", help="derain at 1/K of each size, or 'auto' as derain run does [default: 1]")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per size (at least 5)")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc thresholds alone (a program calling derain.load() without derain.memory)")
    parser.add_argument("--model", default="bundled", help="a model directory or run [default: bundled]")
    parser.add_argument("--sizes", nargs="+", choices=[k.split()[0] for k in SIZES], help="megapixels to time [default: all]")
    parser.add_argument("--worker", nargs=2, type=int, metavar=("H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.reps = max(args.reps, 5)
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return
    rows = []
    for label, (height, width) in SIZES.items():
        if args.sizes and label.split()[0] not in args.sizes:
            continue
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", str(height), str(width)],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{label}: worker failed\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((label, result))
        print(f"{label}: {result['mpixel_per_s']:.3f} Mpixel/s, peak RSS {result['peak_rss_mib']:.0f} MiB "
              f"({result['seconds']:.2f} s median)", flush=True)
    gpu = rows[0][1]["peak_gpu_mib"] is not None
    where = (rows[0][1]["device"] if gpu else f"{args.threads} threads") + (f", {args.precision}" if args.precision else "")
    where += "; glibc's default malloc" if args.malloc_default else ""
    where += f"; --scale {args.scale}" + (f" (8.3 MP at 1/{rows[-1][1]['scale']:.2f})" if args.scale == "auto" else "")
    print(f"\nmodel: {rows[0][1]['model']}; {where}; tiles from "
          f"{'--tile ' + str(args.tile) if args.tile else 'the memory budget ' + (args.max_memory or '1GiB, at most 1024 px on the CPU')}; "
          f"median (range) of {args.reps} calls\n")
    print("| image | tile | seconds | Mpixel/s | RSS after load (MiB) | peak RSS (MiB) |" + (" peak GPU (MiB) |" if gpu else ""))
    print("|---|---|---|---|---|---|" + ("---|" if gpu else ""))
    for label, r in rows:
        print(f"| {label} | {r['tile'] or 'none'} | {r['seconds']:.2f} ({r['min_s']:.2f}–{r['max_s']:.2f}) "
              f"| {r['mpixel_per_s']:.3f} "
              f"| {r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f} |" + (f" {r['peak_gpu_mib']:.0f} |" if gpu else ""))


if __name__ == "__main__":
    main()
