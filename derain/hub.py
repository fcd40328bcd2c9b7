"""Model directories in the Hugging Face convention: `config.json` + `model.safetensors`.

A directory written by `save_pretrained` can be shared as is and loaded with
`from_pretrained` (or `derain.load`). Weights load through safetensors only: nothing is unpickled.
`resolve_model` turns what a user names as a model (`bundled`, a model directory or a training
run directory) into a model directory, for every command and `derain.load`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from derain import __version__
from derain.archs import ImageNet, RecogNet
from derain.atomic import atomic_write
from derain.config import ModelConfig
from derain.errors import DerainError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARCHITECTURES = {"ImageNet": ImageNet, "RecogNet": RecogNet}
BUNDLED_NAMES = ("bundled", "default")  # the shipped model; write ./bundled for a folder of that name
RUN_CONFIG = "config.yaml"  # marks a training run directory (derain.train.rundir)


def save_pretrained(model: torch.nn.Module, directory: str | Path, **info) -> Path:
    """Write config.json (architecture, model config, extra `info`) and model.safetensors."""
    directory = Path(directory)
    arch = type(model).__name__
    if arch not in ARCHITECTURES:
        raise ValueError(f"cannot save {arch}; expected one of {sorted(ARCHITECTURES)}")
    config = {"architecture": arch, "model": model.config.to_dict(), "derain_version": __version__, **info}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp))
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return directory


def resolve_model(spec: str | Path | None) -> Path:
    """The model directory that `spec` names: None, 'bundled' or 'default' for the shipped model,
    a model directory, or a training run directory (its V1 `model/`, else its V2 `scratch_model/`)."""
    if spec is None or str(spec) in BUNDLED_NAMES:
        from derain import api  # keeps bundled_model_dir, where tests and callers replace it

        path = api.bundled_model_dir()
        if not (path / CONFIG_NAME).is_file():
            raise DerainError(f"no bundled model is installed (nothing in {path}); pass --model DIR "
                              "(or derain.load(DIR)) with a model directory holding config.json and "
                              "model.safetensors")
        return path
    path = Path(spec)
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / RUN_CONFIG).is_file():
        from derain.train.rundir import MODEL_DIRS

        for stage in ("finetune", "scratch"):
            if (path / MODEL_DIRS[stage] / CONFIG_NAME).is_file():
                return path / MODEL_DIRS[stage]
        raise DerainError(f"{spec}: a training run without a finished model (no {MODEL_DIRS['finetune']}/ "
                          f"or {MODEL_DIRS['scratch']}/ yet); finish the run or name a model directory")
    what = "folder" if path.is_dir() else "file" if path.exists() else None
    problem = f"a {what} that is neither a model directory ({CONFIG_NAME}) nor a training run" if what else "not found"
    raise DerainError(f"{spec}: {problem}; name a model as {' or '.join(BUNDLED_NAMES)}, "
                      f"a model directory or a training run directory")


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise DerainError(f"{directory}: not a model directory (no {CONFIG_NAME})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DerainError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model directory written by `save_pretrained`, in eval mode."""
    directory = Path(directory)
    config = read_config(directory)
    arch = config.get("architecture", "ImageNet")
    if arch not in ARCHITECTURES:
        raise DerainError(f"{directory / CONFIG_NAME}: unknown architecture {arch!r}")
    model = ARCHITECTURES[arch](ModelConfig.from_dict(config["model"], source=str(directory / CONFIG_NAME)))
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise DerainError(f"{directory}: no {WEIGHTS_NAME}")
    try:
        state = load_file(weights, device=str(map_location))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DerainError(f"{weights}: cannot read weights ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DerainError(f"{weights}: weights do not match the config "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(map_location).eval()
