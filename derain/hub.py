"""Model directories in the Hugging Face convention: `config.json` + `model.safetensors`.

A directory written by `save_pretrained` can be shared as is and loaded with
`from_pretrained` (or `derain.load`). Weights load through safetensors only: nothing is unpickled.
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
