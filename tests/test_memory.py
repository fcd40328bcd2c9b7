import subprocess
import sys

import pytest

# Where a 64 MiB tensor's memory lies after SETUP: "heap" (glibc's main heap, whose freed blocks the
# process reuses) or "mapping" (a mapping of its own, unmapped on free and faulted in afresh next time).
PROBE = """
import torch
{setup}
x = torch.ones(64 << 20, dtype=torch.uint8)
spans = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
print("heap" if any(int(a, 16) <= x.data_ptr() < int(b, 16) for a, b in spans) else "mapping")
"""


def placement(setup: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


@pytest.fixture(scope="module", autouse=True)
def glibc():
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's (Linux)")
    done = subprocess.run([sys.executable, "-c", "from derain.memory import keep_freed_memory as k; print(k())"],
                          capture_output=True, text=True, check=True)
    if done.stdout.strip() != "True":
        pytest.skip("this C library has no mallopt (not glibc)")


def test_keep_freed_memory_puts_large_activations_on_the_reused_heap():
    """glibc maps every block over 32 MiB on its own and unmaps it on free, so the next one faults in
    fresh zeroed pages (8,192 faults for 32 MiB); after keep_freed_memory it comes from the heap."""
    assert placement("") == "mapping"
    assert placement("from derain.memory import keep_freed_memory; keep_freed_memory()") == "heap"


def test_the_derain_command_keeps_freed_memory_for_every_subcommand():
    """`derain run` and every other subcommand run in a process that keeps freed blocks (a 1 MP photo
    about a quarter faster on 2 cores, benchmarks/bench_infer.py); parsing alone does not set it."""
    assert placement("from derain.cli import main; main(['info'])") == "heap"
    assert placement("from derain.cli import build_parser; build_parser().parse_args(['info'])") == "mapping"
