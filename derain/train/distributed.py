"""One process, or one per GPU (or CPU rank) under torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from derain.errors import DerainError


@dataclass(frozen=True)
class Dist:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor that every rank holds."""
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values


def setup(device: str) -> Dist:
    """Pick the device and, under torchrun, join the process group (NCCL on CUDA, gloo on the CPU)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DerainError("device: cuda, but CUDA is not available (use device: cpu or auto)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Dist(torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"), dist.get_rank(), world_size)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
