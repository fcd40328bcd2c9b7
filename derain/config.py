"""Network configs: a plain dict, a YAML file, or a shipped preset (`tiny`, `default`, `paper`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from derain.errors import DerainError

PRESETS = ("tiny", "default", "paper")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one encoder (E_recog, E_recon, E_stu share it) and its decoders."""

    in_chans: int = 3
    dim: int = 60  # C, the token width
    depth: int = 9  # number of AGLF-ViT blocks
    num_heads: int = 6
    window_size: int = 8
    mlp_ratio: float = 2.0
    patch_size: int = 1  # 1: full resolution (paper); 2: pixel-unshuffle stem, pixel-shuffle heads
    local_reduction: int = 8  # local CNN branch width is dim // local_reduction
    se_window: int = 31  # channel-attention pooling window in tokens; 0 = global (as CA-ViT)
    spp_kernels: tuple[int, ...] = field(default=(5, 9, 13))
    detail_dim: int = 0  # width of the image decoders' full-resolution detail path; 0 = none
    context_dim: int = 0  # width of the detail path's dilated context branch (needs detail_dim); 0 = none
    darken_only: bool = False  # D_dr: no output pixel brighter than the input (rain only adds light)
    shrink: float = 0.0  # D_dr: soft threshold on the residual, 0-1 scale: smaller changes are dropped
    shrink_streaks: float = 0.0  # D_dr: the threshold on the input's own rain streaks (inference; training with streak_map)
    streak_level: float = 4.0  # grey levels: a streak is where the input's rain layer exceeds this (with shrink_streaks)

    def __post_init__(self):
        object.__setattr__(self, "spp_kernels", tuple(int(k) for k in self.spp_kernels))
        if self.dim % self.num_heads:
            raise DerainError(f"model config: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        for name in ("dim", "depth", "num_heads", "window_size", "patch_size", "local_reduction"):
            if getattr(self, name) < 1:
                raise DerainError(f"model config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("shrink", "shrink_streaks"):
            if not 0 <= getattr(self, name) < 1:
                raise DerainError(f"model config: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.streak_level < 0:
            raise DerainError(f"model config: streak_level must be >= 0 (grey levels), got {self.streak_level}")
        if self.detail_dim < 0:
            raise DerainError(f"model config: detail_dim must be >= 0, got {self.detail_dim}")
        if self.context_dim < 0 or (self.context_dim and not self.detail_dim):
            raise DerainError(f"model config: context_dim={self.context_dim} needs detail_dim > 0 and must be >= 0")
        if any(k < 1 or k % 2 == 0 for k in self.spp_kernels):
            raise DerainError(f"model config: spp_kernels must be odd and positive, got {list(self.spp_kernels)}")

    @classmethod
    def from_dict(cls, d: dict, source: str = "model config") -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DerainError(f"{source}: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["spp_kernels"] = list(self.spp_kernels)
        return d


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DerainError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DerainError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DerainError(f"{path}: expected a mapping at the top level")
    return data


def preset_dict(name: str) -> dict:
    if name not in PRESETS:
        raise DerainError(f"unknown preset {name!r}; choose one of {list(PRESETS)} or give a YAML file")
    text = resources.files("derain").joinpath("presets", f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def load_model_config(spec: "str | Path | dict | ModelConfig") -> ModelConfig:
    """Resolve a preset name, a YAML path (a model config, or a training config with a `model:` key) or a dict."""
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, dict):
        if "model" in spec:
            return load_model_config(spec["model"])
        return ModelConfig.from_dict(spec)
    spec = str(spec)
    if spec in PRESETS:
        return ModelConfig.from_dict(preset_dict(spec), source=f"preset {spec}")
    if not spec.endswith((".yaml", ".yml", ".json")) and not Path(spec).exists():
        raise DerainError(f"unknown preset {spec!r}; choose one of {list(PRESETS)} or give a YAML file")
    data = read_yaml(spec)
    if "model" in data:
        model = data["model"]
        if isinstance(model, str):
            return load_model_config(model)
        return ModelConfig.from_dict(model, source=f"{spec}: model")
    return ModelConfig.from_dict(data, source=spec)
