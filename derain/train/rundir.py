"""Everything a training run writes under RUN/ (docs/training.md, "Run directory"):

    config.yaml                          the resolved config
    metrics.jsonl                        one JSON object per line: training losses, lr, it/s; validation scores
    tb/<stage>/                          TensorBoard events
    data/demo/, data/synth-<rain model>/ generated datasets
    <stage>/ckpt-<step>.safetensors      the stage's last checkpoint: weights (and `ema.` weights) ...
    <stage>/ckpt-<step>.pt               ... optimizer, scheduler, RNG and step state (tensors and primitives)
    <stage>/latest.json                  names the last complete checkpoint
    <stage>/done.json                    written last: the stage is complete and is skipped by reruns
    recog/model/, recon/model/           the teachers, as model directories
    distill/student.safetensors          E_stu after distillation (the projections are dropped)
    model/, scratch_model/               V1 (E_stu + D_dr) and V2, loadable with derain.hub.from_pretrained
    finetune/best/, scratch/best/        the best validation checkpoint, as model directories

Every file is written atomically (a temp file, then a rename), so a killed run leaves whole files only.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from derain.evaluation import write_json, write_text
from derain.atomic import atomic_write

MODEL_DIRS = {"recog": "recog/model", "recon": "recon/model", "finetune": "model", "scratch": "scratch_model"}


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config_file = self.root / "config.yaml"
        self.metrics_file = self.root / "metrics.jsonl"
        self.student_weights = self.root / "distill" / "student.safetensors"
        self.demo_dir = self.root / "data" / "demo"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def model_dir(self, stage: str) -> Path:
        return self.root / MODEL_DIRS[stage]

    def synth_dir(self, rain_model: str) -> Path:
        return self.root / "data" / f"synth-{rain_model}"

    def is_done(self, stage: str) -> bool:
        return (self.stage_dir(stage) / "done.json").is_file()

    def mark_done(self, stage: str, summary: dict) -> None:
        write_json(self.stage_dir(stage) / "done.json", summary)

    def checkpoint_step(self, stage: str) -> int | None:
        latest = self.stage_dir(stage) / "latest.json"
        return json.loads(latest.read_text())["step"] if latest.is_file() else None


def save_checkpoint(folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict) -> None:
    """Write ckpt-<step>.{safetensors,pt}, then point latest.json at them and remove older ones."""
    stem = f"ckpt-{step:08d}"
    cpu = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    atomic_write(folder / f"{stem}.safetensors", lambda tmp: save_file(cpu, tmp))
    atomic_write(folder / f"{stem}.pt", lambda tmp: torch.save(state, tmp))
    write_json(folder / "latest.json", {"step": step, "weights": f"{stem}.safetensors", "state": f"{stem}.pt"})
    for old in folder.glob("ckpt-*"):
        if not old.name.startswith(stem + "."):
            old.unlink()


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The (weights, state) of the last complete checkpoint on the CPU, or None."""
    latest = folder / "latest.json"
    if not latest.is_file():
        return None
    names = json.loads(latest.read_text())
    weights = load_file(folder / names["weights"])
    state = torch.load(folder / names["state"], map_location="cpu", weights_only=True)
    return weights, state


class RunLog:
    """metrics.jsonl plus TensorBoard events (tb/<stage>); a no-op on ranks other than 0."""

    def __init__(self, run: RunDir, enabled: bool):
        self.run, self.enabled = run, enabled
        self.writer = None
        self.tensorboard = True

    def start_stage(self, stage: str, step: int) -> None:
        """Drop the log lines a killed attempt wrote after `step`, so the log matches the weights."""
        if not self.enabled:
            return
        self.close()
        if self.run.metrics_file.is_file():
            lines = self.run.metrics_file.read_text().splitlines(keepends=True)
            kept = [line for line in lines if _keep(line, stage, step)]
            if len(kept) < len(lines):
                write_text(self.run.metrics_file, "".join(kept))
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
                self.tensorboard = False
                return
            self.writer = SummaryWriter(str(self.run.root / "tb" / stage), purge_step=step)

    def write(self, stage: str, step: int, **values: float) -> None:
        if not self.enabled:
            return
        with self.run.metrics_file.open("a") as f:
            f.write(json.dumps({"stage": stage, "step": step, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{stage}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _keep(line: str, stage: str, step: int) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:
        return False  # a line cut short by a kill
    return not (entry.get("stage") == stage and entry.get("step", 0) > step)
