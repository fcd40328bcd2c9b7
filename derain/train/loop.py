"""The one training loop that every stage runs.

Each iteration: this rank's share of the next global batch; the forward pass (bf16 autocast on CUDA);
backward (DDP averages the gradients over ranks); gradient clipping; a NaN/inf guard; an Adam step;
the EMA update. Every `plateau_every` iterations ReduceLROnPlateau steps on the mean loss of that
window, every `log_every` rank 0 logs, every `val_every` it scores data.val and keeps the best
weights, and every `checkpoint_every` it checkpoints. A stage resumes from its last checkpoint and
replays exactly what the killed run did after it: the batch stream depends only on (seed, step).
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from derain.api import Derainer
from derain.data import Pair, load_pair_uint8
from derain.errors import DerainError
from derain.hub import save_pretrained
from derain.metrics import psnr, ssim
from derain.train.config import StageConfig
from derain.train.distributed import Dist
from derain.train.rundir import RunDir, RunLog, load_checkpoint, save_checkpoint
from derain.train.stages import Stage


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
    if per_epoch == 0:
        raise DerainError(f"{n} samples per epoch, fewer than the batch size {batch_size}")
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


def validate(net: nn.Module, pairs: list[Pair], device: torch.device) -> dict[str, float]:
    """Mean Y-PSNR/SSIM (derain.metrics, MATLAB protocol) of the net's uint8 outputs on whole images,
    derained as `derain.load` does (large images in tiles)."""
    derainer = Derainer(net.eval(), device)
    scores = []
    for pair in pairs:
        rainy, clean = load_pair_uint8(pair)
        output = derainer(rainy)
        scores.append((psnr(output, clean), ssim(output, clean)))
    net.train()
    mean_psnr, mean_ssim = np.mean(scores, axis=0)
    return {"val_psnr": float(mean_psnr), "val_ssim": float(mean_ssim)}


def train_stage(stage: Stage, cfg: StageConfig, ctx: Context) -> bool:
    """Train a stage to cfg.iters from its last checkpoint, then export it and mark it done.
    Returns False if ctx.stop_at stopped it first."""
    run, dist, device = ctx.run, ctx.dist, ctx.dist.device
    folder = run.stage_dir(stage.name)
    module = stage.module.to(device)
    optimizer = torch.optim.Adam(stage.param_groups)
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
    ema = EMA(module, cfg.ema) if cfg.ema else None
    step, best = 0, None
    window = [0.0, 0]  # loss sum and count since the last plateau step
    sums, count = {}, 0  # loss parts summed since the last log line

    checkpoint = load_checkpoint(folder)
    if checkpoint is not None:
        weights, state = checkpoint
        module.load_state_dict({k: v for k, v in weights.items() if not k.startswith("ema.")})
        if ema is not None:
            ema.weights = {k: weights["ema." + k].to(device) for k in ema.weights}
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["cpu"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        step, window, best = state["step"], state["plateau_window"], state["best"]
        sums, count = state["log_window"]["sums"], state["log_window"]["count"]
    saved_step = step if checkpoint is not None else None

    def save():
        weights = dict(module.state_dict())
        if ema is not None:
            weights.update({"ema." + k: v for k, v in ema.weights.items()})
        rng = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        save_checkpoint(folder, step, weights, {"step": step, "optimizer": optimizer.state_dict(),
                                                "scheduler": scheduler.state_dict(), "rng": rng,
                                                "plateau_window": window, "best": best,
                                                "log_window": {"sums": sums, "count": count}})

    model = DistributedDataParallel(module) if dist.world_size > 1 else module
    batches = batch_stream(stage.dataset, cfg.batch_size, step, ctx)
    validating = stage.val_net is not None and bool(ctx.val_pairs) and cfg.val_every > 0
    bf16 = ctx.amp and device.type == "cuda"
    ctx.log.start_stage(stage.name, step)
    bar = tqdm(total=cfg.iters, initial=step, desc=stage.name, unit="it", disable=not dist.is_main,
               dynamic_ncols=True)
    tic, logged = time.perf_counter(), {}
    module.train()
    while step < cfg.iters:
        if ctx.stop_at == (stage.name, step):
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
            kept = f"step {saved_step} in {folder}" if saved_step is not None else "none yet"
            raise DerainError(f"stage {stage.name}: the loss became {values['loss']} (gradient norm {grad_norm}) "
                              f"at step {step + 1}; stopped without saving it. Last good checkpoint: {kept}. "
                              "Lower the lr or set clip_grad, then rerun with --resume")
        optimizer.step()
        if ema is not None:
            ema.update(module)
        step += 1

        window = [window[0] + values["loss"], window[1] + 1]
        if step % cfg.plateau_every == 0:
            scheduler.step(window[0] / window[1])
            window = [0.0, 0]
        lr = optimizer.param_groups[-1]["lr"]
        bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2e}", refresh=False)
        bar.update()
        sums, count = {k: sums.get(k, 0.0) + v for k, v in values.items()}, count + 1
        if step % cfg.log_every == 0 or step == cfg.iters:
            logged = {k: v / count for k, v in sums.items()}
            ctx.log.write(stage.name, step, **logged, lr=lr, it_s=count / (time.perf_counter() - tic))
            sums, count, tic = {}, 0, time.perf_counter()
        if validating and dist.is_main and (step % cfg.val_every == 0 or step == cfg.iters):
            with averaged_weights(module, ema):
                scores = validate(stage.val_net, ctx.val_pairs, device)
                if best is None or scores["val_psnr"] > best["val_psnr"]:
                    best = {"step": step, **scores}
                    save_pretrained(stage.val_net, folder / "best", stage=stage.name, **best)
            ctx.log.write(stage.name, step, **scores, best_val_psnr=best["val_psnr"])
            bar.write(f"{stage.name} step {step}: val Y-PSNR {scores['val_psnr']:.2f} dB, "
                      f"SSIM {scores['val_ssim']:.4f} (best {best['val_psnr']:.2f} at step {best['step']})")
        if step % cfg.checkpoint_every == 0 or step == cfg.iters:
            if dist.is_main:
                save()
            saved_step = step
    bar.close()

    if dist.is_main:
        with averaged_weights(module, ema):
            stage.export(module)
        run.mark_done(stage.name, {"step": step, **logged, "best": best})
    dist.barrier()
    return True
