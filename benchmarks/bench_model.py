"""Forward-pass speed of the networks, against the machine's own matmul speed.

    python benchmarks/bench_model.py                       # tiny/default/paper at 256² and 1 MP
    python benchmarks/bench_model.py --presets default --sizes 256 1024 3840x2160 --reps 5

Each (preset, patch, size) runs in a fresh subprocess, so the peak RSS column is that run's own.
GFLOPs are counted by torch.utils.flop_counter; "% matmul" compares the achieved GFLOP/s with a
2048² fp32 matmul measured in the same run and thread count.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return (int(h or w), int(w))


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(reps: int = 5) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / statistics.median(timed(lambda: a @ b, reps)) / 1e9


def measure(preset: str, patch: int, size: str, reps: int, threads: int) -> dict:
    """Runs inside the subprocess."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from derain.archs import create_model
    from derain.config import load_model_config

    torch.set_num_threads(threads)
    cfg = {**load_model_config(preset).to_dict(), "patch_size": patch}
    model = create_model(cfg).eval()
    h, w = parse_size(size)
    x = torch.rand(1, 3, h, w)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(x)
        times = timed(lambda: model(x), reps)
    gflop = counter.get_total_flops() / 1e9
    median = statistics.median(times)
    peak = matmul_gflops()
    return {
        "preset": preset, "patch": patch, "size": f"{w}x{h}", "mpix": h * w / 1e6,
        "median_s": median, "min_s": min(times), "max_s": max(times),
        "mpix_per_s": h * w / 1e6 / median, "gflop_per_mpix": gflop / (h * w / 1e6),
        "gflops_per_s": gflop / median, "matmul_gflops_per_s": peak, "pct_matmul": 100 * gflop / median / peak,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "default", "paper"])
    parser.add_argument("--patches", nargs="+", type=int, default=None, help="patch sizes (default: the preset's)")
    parser.add_argument("--sizes", nargs="+", default=["256", "1024"], help="N (square) or WxH")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        preset, patch, size, reps = args._child
        print(json.dumps(measure(preset, int(patch), size, int(reps), args.threads)))
        return

    from derain.config import load_model_config

    rows = []
    print(f"{'preset':<8} {'patch':>5} {'size':>10} {'median s':>9} {'range s':>13} {'MP/s':>7} "
          f"{'GFLOP/MP':>9} {'GFLOP/s':>8} {'% matmul':>8} {'RSS MiB':>8}")
    for preset in args.presets:
        for patch in args.patches or [load_model_config(preset).patch_size]:
            for size in args.sizes:
                out = subprocess.run(
                    [sys.executable, __file__, "--threads", str(args.threads),
                     "--_child", preset, str(patch), size, str(args.reps)],
                    capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append(r)
                print(f"{r['preset']:<8} {r['patch']:>5} {r['size']:>10} {r['median_s']:>9.3f} "
                      f"{r['min_s']:>6.3f}-{r['max_s']:<6.3f} {r['mpix_per_s']:>7.3f} {r['gflop_per_mpix']:>9.1f} "
                      f"{r['gflops_per_s']:>8.1f} {r['pct_matmul']:>7.1f}% {r['peak_rss_mib']:>8.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
