"""`train(config, out)`: the pipeline of Fig. 3 into a run directory, stage after stage.

Everything that can be checked is checked before any training: the config, the dataset paths, the
inputs of each selected stage (distill needs finished teachers, finetune a finished distill), and
whether RUN holds a different config or an unfinished stage that only --resume may continue.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import yaml

from derain.data import list_pairs
from derain.data.demo import build as build_demo
from derain.data.synthesis import synth_folder
from derain.errors import DerainError
from derain.evaluation import write_text
from derain.hub import resolve_model
from derain.memory import keep_freed_memory
from derain.train.config import STAGES, TrainConfig, load_train_config, resolve_data
from derain.train.distributed import Dist, setup, teardown
from derain.train.loop import Context, train_stage
from derain.train.rundir import RunDir, RunLog
from derain.train.stages import build_stage

REQUIRES = {"finetune": ("distill",)}  # distill requires its configured teachers


def train(config: str | Path | dict, out: str | Path, stages: list[str] | None = None, resume: bool = False,
          stop_at: tuple[str, int] | None = None, overrides: list[str] = ()) -> RunDir:
    """Run the selected stages (default: the config's pipeline) into `out`. Completed stages are skipped;
    with `resume`, an unfinished stage continues from its last checkpoint."""
    cfg = load_train_config(config, overrides=overrides)
    unknown = [s for s in stages or () if s not in STAGES]
    if unknown:
        raise DerainError(f"--stages: unknown stage {unknown[0]!r}; the stages are {', '.join(STAGES)}")
    selected = [s for s in STAGES if s in (stages or cfg.pipeline)]
    run = RunDir(out)
    dist = setup(cfg.device)
    if dist.device.type == "cpu":
        keep_freed_memory()
    determinism = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.utils.deterministic.fill_uninitialized_memory)
    try:
        check_batches(cfg, selected, dist)
        check_stage_inputs(run, cfg, selected, resume)
        demo = None
        if cfg.data.demo:
            if dist.is_main:
                build_demo(run.demo_dir, seed=cfg.seed)
            dist.barrier()
            demo = build_demo(run.demo_dir, seed=cfg.seed)
        cfg.data = resolve_data(cfg.data, selected, demo)
        check_same_config(run, cfg)
        val_pairs = []
        if cfg.data.val and {"recog", "finetune", "scratch"} & set(selected):  # the stages that validate
            val_pairs = list_pairs(cfg.data.val)[:cfg.data.val_max_images or None]
        if dist.is_main:
            write_text(run.config_file, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        set_determinism(cfg.deterministic)
        ctx = Context(run, dist, RunLog(run, dist.is_main), cfg.seed, cfg.amp, cfg.data.workers, val_pairs, stop_at,
                      cpu_bf16=cfg.cpu_bf16)
        try:
            for name in selected:
                if run.is_done(name):
                    if dist.is_main:
                        print(f"{name}: already done in {run.stage_dir(name)}, skipped")
                    continue
                if name in ("finetune", "scratch") and not (cfg.data.pairs or cfg.data.synth.online):
                    synthesize_pairs(cfg, run, dist)
                if not train_stage(build_stage(name, cfg, run, dist.device), cfg.stages[name], ctx):
                    break
        finally:
            ctx.log.close()
    finally:
        torch.use_deterministic_algorithms(determinism[0], warn_only=determinism[1])
        torch.utils.deterministic.fill_uninitialized_memory = determinism[2]
        teardown()
    return run


def check_batches(cfg: TrainConfig, selected: list[str], dist: Dist) -> None:
    for name in selected:
        if cfg.stages[name].batch_size % dist.world_size:
            raise DerainError(f"stages.{name}.batch_size: the global batch {cfg.stages[name].batch_size} "
                              f"does not split over {dist.world_size} ranks")


def check_stage_inputs(run: RunDir, cfg: TrainConfig, selected: list[str], resume: bool) -> None:
    """Refuse a stage whose input stages have not finished, and an unfinished stage without --resume."""
    for name in selected:
        if run.is_done(name):
            if cfg.stages[name].init:  # as stored, so a rerun from another folder matches; it may be gone by now
                try:
                    cfg.stages[name].init = str(resolve_model(cfg.stages[name].init).resolve())
                except DerainError:
                    pass
            continue
        if cfg.stages[name].init:
            if name != "scratch":
                raise DerainError(f"stages.{name}.init: only scratch can start from a model's weights")
            # a one-line error now, not after the earlier stages; absolute, so a resume elsewhere finds it
            cfg.stages[name].init = str(resolve_model(cfg.stages[name].init).resolve())
        for need in cfg.stages["distill"].teachers if name == "distill" else REQUIRES.get(name, ()):
            if need not in selected and not run.is_done(need):
                raise DerainError(f"stage {name} needs stage {need}, which has not finished in {run.root}; "
                                  f"run it first (add it to --stages)")
        step = run.checkpoint_step(name)
        if step is not None and not resume:
            raise DerainError(f"{run.stage_dir(name)} holds an unfinished run at step {step}; "
                              "pass --resume to continue it, or choose another --out")


def check_same_config(run: RunDir, cfg: TrainConfig) -> None:
    """Refuse a RUN made with another config (the stage selection aside), except that an unfinished stage's
    `iters` may be raised: `--resume` then trains it on to the new count."""
    if run.config_file.is_file():
        stored = load_train_config(run.config_file).to_dict()  # keys added since then take their defaults
        for name, stage in stored["stages"].items():
            if not run.is_done(name) and cfg.stages[name].iters > stage["iters"]:
                stage["iters"] = cfg.stages[name].iters
        where = first_difference({**stored, "pipeline": None}, {**cfg.to_dict(), "pipeline": None})
        if where:
            raise DerainError(f"{run.config_file} differs from this config at {where}; use another --out "
                              "(copy finished stage folders into it to reuse them)")


def first_difference(a, b, path: str = "") -> str | None:
    """The key path where two nested configs first differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if where:
                return where
        return None
    return None if a == b else f"{path} ({a!r} there, {b!r} here)"


def synthesize_pairs(cfg: TrainConfig, run: RunDir, dist: Dist) -> None:
    """Rank 0 synthesises the fine-tuning pairs into a temporary folder, then renames it into place."""
    out, synth = run.synth_dir(cfg.data.synth.rain_model), cfg.data.synth
    if dist.is_main and not out.is_dir():
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        synth_folder(synth.clean, partial, synth.rain_model, n=synth.count, seed=cfg.seed, crop=synth.crop,
                     params=synth.params)
        os.replace(partial, out)
    dist.barrier()


def set_determinism(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # deterministic mode also fills every new tensor with NaN, a debugging aid that cost 13% of a CPU step
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = not deterministic
