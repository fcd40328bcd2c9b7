"""The one training loop that every stage runs.

Each iteration: this rank's share of the next global batch; the forward pass (bf16 autocast on CUDA);
backward (DDP averages the gradients over ranks); gradient clipping; a NaN/inf guard; an Adam step;
the EMA update. Every `plateau_every` iterations ReduceLROnPlateau steps on the mean loss of that
window, every `log_every` rank 0 logs, every `val_every` it scores data.val and keeps the best
weights, and every `checkpoint_every` it checkpoints. A stage resumes from its last checkpoint and
replays exactly what the killed run did after it: the batch stream depends only on (seed, step).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from derain.console import progress_bar
from derain.data import Pair
from derain.errors import DerainError
from derain.hub import save_pretrained
from derain.inference import cpu_has_bf16
from derain.train.config import StageConfig
from derain.train.distributed import Dist
from derain.train.rundir import RunDir, RunLog, load_checkpoint, save_checkpoint
from derain.train.stages import Stage
from derain.train.validation import describe


@dataclass
class Context:
    """What every stage shares: where to write, which rank this is, and run-wide settings."""

    run: RunDir
    dist: Dist
    log: RunLog
    seed: int
    amp: bool
    workers: int
    val_pairs: list[Pair]
    stop_at: tuple[str, int] | None = None  # test hook: return at (stage, step) as a killed run would
    cpu_bf16: bool = False


def autocast_bf16(device: torch.device, amp: bool, cpu_bf16: bool) -> bool:
    """bf16 autocast: on CUDA with `amp`; on the CPU with `cpu_bf16`, where the CPU has bf16 instructions."""
    if device.type == "cuda":
        return amp
    if device.type == "cpu" and cpu_bf16:
        if cpu_has_bf16():
            return True
        print("cpu_bf16: this CPU has no bf16 instructions (AVX-512 BF16, AMX); training in fp32")
    return False


class EMA:
    """An exponential moving average of a module's floating-point weights: ema ← d·ema + (1 − d)·w."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.weights = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for key, value in module.state_dict().items():
            if key in self.weights:
                self.weights[key].lerp_(value, 1 - self.decay)


@contextmanager
def averaged_weights(module: nn.Module, ema: EMA | None):
    """Within the block, the module holds the EMA weights (for validation and export)."""
    if ema is None:
        yield
        return
    live = {k: v.clone() for k, v in module.state_dict().items()}
    module.load_state_dict(ema.weights, strict=False)
    try:
        yield
    finally:
        module.load_state_dict(live)


def batch_stream(dataset: Dataset, batch_size: int, start_step: int, ctx: Context) -> Iterator[list]:
    """This rank's share of every global batch from `start_step` on. Each epoch is a permutation drawn
    from (seed, epoch) and cut into whole global batches, so batch k is the same whatever the number of
    ranks or workers and wherever a run resumed."""
    n, rank, world = len(dataset), ctx.dist.rank, ctx.dist.world_size
    per_epoch, per_rank = n // batch_size, batch_size // world
    step = start_step
    while True:
        epoch, first = divmod(step, per_epoch)
        dataset.set_epoch(epoch)
        order = np.random.default_rng([ctx.seed, epoch]).permutation(n)
        starts = [b * batch_size + rank * per_rank for b in range(first, per_epoch)]
        loader = DataLoader(dataset, batch_sampler=[order[i:i + per_rank].tolist() for i in starts],
                            num_workers=ctx.workers, pin_memory=ctx.dist.device.type == "cuda")
        yield from loader
        step = (epoch + 1) * per_epoch


@dataclass
class RunningMean:
    """Sums of named values and their count since the last `pop` (the plateau and the log windows)."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, values: dict[str, float]) -> None:
        self.sums = {k: self.sums.get(k, 0.0) + v for k, v in values.items()}
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


@dataclass
class Progress:
    """The loop's own state, checkpointed with the weights so that a resumed run replays exactly."""

    step: int = 0
    plateau: RunningMean = field(default_factory=RunningMean)
    log: RunningMean = field(default_factory=RunningMean)
    best: dict | None = None  # {"step", "val_psnr", "val_ssim"} of the best validation

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        return cls(d["step"], RunningMean(**d["plateau"]), RunningMean(**d["log"]), d["best"])


def save(folder, progress: Progress, module: nn.Module, ema: EMA | None, optimizer, scheduler) -> None:
    weights = dict(module.state_dict())
    if ema is not None:
        weights.update({"ema." + k: v for k, v in ema.weights.items()})
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_checkpoint(folder, progress.step, weights, {"progress": dataclasses.asdict(progress), "rng": rng,
                                                     "optimizer": optimizer.state_dict(),
                                                     "scheduler": scheduler.state_dict()})


def restore(folder, module: nn.Module, ema: EMA | None, optimizer, scheduler) -> Progress:
    """Load the last checkpoint into the module, EMA, optimizer, scheduler and RNG; a new Progress if none."""
    checkpoint = load_checkpoint(folder)
    if checkpoint is None:
        return Progress()
    weights, state = checkpoint
    module.load_state_dict({k: v for k, v in weights.items() if not k.startswith("ema.")})
    if ema is not None:
        ema.weights = {k: weights["ema." + k].to(ema.weights[k].device) for k in ema.weights}
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    return Progress.from_dict(state["progress"])


def validate_and_keep_best(stage: Stage, ctx: Context, progress: Progress, module: nn.Module,
                           ema: EMA | None, keep: bool = False) -> None:
    """Score data.val with the (EMA) weights by the stage's `validate` (its first score decides); save
    them as <stage>/best when they beat the best so far, and as <stage>/val-<step> too with `keep`."""
    with averaged_weights(module, ema):
        scores = stage.validate(stage.val_net, ctx.val_pairs, ctx.dist.device)
        key = next(iter(scores))
        if keep:
            save_pretrained(stage.val_net, ctx.run.stage_dir(stage.name) / f"val-{progress.step:08d}",
                            stage=stage.name, step=progress.step, **scores)
        if progress.best is None or scores[key] > progress.best[key]:
            progress.best = {"step": progress.step, **scores}
            save_pretrained(stage.val_net, ctx.run.stage_dir(stage.name) / "best", stage=stage.name, **progress.best)
    ctx.log.write(stage.name, progress.step, **scores, **{f"best_{key}": progress.best[key]})
    tqdm.write(describe(stage.name, progress.step, scores, progress.best))


def train_stage(stage: Stage, cfg: StageConfig, ctx: Context) -> bool:
    """Train a stage to cfg.iters from its last checkpoint, then export it and mark it done.
    Returns False if ctx.stop_at stopped it first."""
    run, dist, device = ctx.run, ctx.dist, ctx.dist.device
    if len(stage.dataset) < cfg.batch_size:
        raise DerainError(f"stage {stage.name}: {len(stage.dataset)} samples per epoch, fewer than its "
                          f"batch_size {cfg.batch_size}; add images or lower the batch size")
    folder = run.stage_dir(stage.name)
    module = stage.module.to(device)
    optimizer = torch.optim.Adam(stage.param_groups, fused=device.type in ("cpu", "cuda"))  # one kernel for all weights
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
    ema = EMA(module, cfg.ema) if cfg.ema else None
    progress = restore(folder, module, ema, optimizer, scheduler)
    model = DistributedDataParallel(module) if dist.world_size > 1 else module
    batches = batch_stream(stage.dataset, cfg.batch_size, progress.step, ctx)
    validating = stage.val_net is not None and bool(ctx.val_pairs) and cfg.val_every > 0 and dist.is_main
    bf16 = autocast_bf16(device, ctx.amp, ctx.cpu_bf16)
    ctx.log.start_stage(stage.name, progress.step)
    bar = progress_bar(total=cfg.iters, initial=progress.step, desc=stage.name, unit="it", disable=not dist.is_main,
                       dynamic_ncols=True)
    tic, logged = time.perf_counter(), {}
    module.train()
    while progress.step < cfg.iters:
        if ctx.stop_at == (stage.name, progress.step):
            bar.close()
            return False
        batch = [t.to(device, non_blocking=True) for t in next(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = float(nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_grad or math.inf))
        values = dict(zip(losses, dist.mean(torch.stack([v.detach().float() for v in losses.values()])).tolist()))
        if not (math.isfinite(values["loss"]) and math.isfinite(grad_norm)):
            bar.close()
            raise DerainError(f"stage {stage.name}: the loss became {values['loss']} (gradient norm {grad_norm}) "
                              f"at step {progress.step + 1}; stopped without saving it. Last good checkpoint: "
                              f"step {run.checkpoint_step(stage.name)} in {folder}. "
                              "Lower the lr or set clip_grad, then rerun with --resume")
        optimizer.step()
        if ema is not None:
            ema.update(module)
        progress.step += 1
        step = progress.step

        progress.plateau.add({"loss": values["loss"]})
        if step % cfg.plateau_every == 0:
            scheduler.step(progress.plateau.pop()["loss"])
        lr = optimizer.param_groups[-1]["lr"]
        bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2e}", refresh=False)
        bar.update()
        progress.log.add(values)
        if step % cfg.log_every == 0 or step == cfg.iters:
            count, logged = progress.log.count, progress.log.pop()
            ctx.log.write(stage.name, step, **logged, lr=lr, it_s=count / (time.perf_counter() - tic))
            tic = time.perf_counter()
        if validating and (step % cfg.val_every == 0 or step == cfg.iters):
            validate_and_keep_best(stage, ctx, progress, module, ema, cfg.keep_val_models)
        if dist.is_main and (step % cfg.checkpoint_every == 0 or step == cfg.iters):
            save(folder, progress, module, ema, optimizer, scheduler)
    bar.close()

    if dist.is_main:
        with averaged_weights(module, ema):
            stage.export(module)
        run.mark_done(stage.name, {"step": progress.step, **logged, "best": progress.best})
    dist.barrier()
    return True
