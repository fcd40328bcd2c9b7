"""The training config: one YAML file, checked in full before any work starts (docs/training.md).

    model: tiny                    # E_recog and E_recon: a preset, a model YAML or a mapping of ModelConfig keys
    student: {dim: 12}             # E_stu: the same forms; a mapping is applied on top of `model`; null = `model`
    pipeline: [recog, recon, distill, finetune, scratch]
    data: {...}                    # DataConfig
    train: {...}                   # StageConfig keys: defaults for every stage
    stages: {finetune: {...}}      # per-stage overrides, plus distill.teachers and finetune.lr_encoder

Every mapping refuses unknown keys, naming the key path. Numbers written `4e-4` (a string to YAML 1.1)
are read as floats. Relative dataset paths are relative to the working directory; `data.real_rainy`
and `data.real_clear` entries may be globs such as `../shared/data/clean/*`.
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from derain.config import ModelConfig, load_model_config, read_yaml
from derain.data.families import check_overrides, check_weights
from derain.data.synthesis import DEFAULTS as RAIN_DEFAULTS, MODELS as RAIN_MODELS
from derain.errors import DerainError

STAGES = ("recog", "recon", "distill", "finetune", "scratch")
TEACHERS = ("recog", "recon")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class StageConfig:
    """How one stage trains. Budgets are optimizer steps; `batch_size` is the global batch."""

    iters: int = 1000
    batch_size: int = 8
    crop: int = 256  # square training patch side
    lr: float = 4e-4  # Adam's initial lr (D_dr's in finetune)
    plateau_every: int = 100  # every N iterations, ReduceLROnPlateau steps on the mean loss of those N
    plateau_patience: int = 2  # windows without improvement before the lr halves
    min_lr: float = 1e-7
    clip_grad: float = 0.0  # max global gradient norm; 0 = no clipping (the paper mentions none)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    log_every: int = 20
    checkpoint_every: int = 500
    val_every: int = 500  # recog (balanced accuracy), finetune and scratch (Y-PSNR/SSIM) on data.val every K; 0 = off
    keep_val_models: bool = False  # also keep each validation's weights as <stage>/val-<step>/ (to average)
    init: str | None = None  # scratch only: start from this model's weights ('bundled', a model or run dir)

    def __post_init__(self):
        for name in ("iters", "batch_size", "crop", "plateau_every", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0 or self.clip_grad < 0 or self.plateau_patience < 0 or self.val_every < 0:
            raise ValueError("lr must be positive; min_lr, clip_grad, plateau_patience and val_every non-negative")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass
class RecogConfig(StageConfig):
    synthetic_rain: float = 0.0  # share of the rainy samples that are clear training photos with synthetic rain

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.synthetic_rain <= 1:
            raise ValueError(f"synthetic_rain must be in [0, 1], got {self.synthetic_rain}")


@dataclass
class DistillConfig(StageConfig):
    teachers: list[str] = field(default_factory=lambda: list(TEACHERS))  # Table 3 ablation: [recog] or [recon]

    def __post_init__(self):
        super().__post_init__()
        if not self.teachers or len(set(self.teachers)) != len(self.teachers) or set(self.teachers) - set(TEACHERS):
            raise ValueError(f"teachers must be a non-empty list drawn from {list(TEACHERS)}, got {self.teachers}")


@dataclass
class RestorationConfig(StageConfig):
    """finetune and scratch: Eq. 2, optionally plus a weighted low-frequency term (`losses.lowfreq_loss`)."""

    lowfreq: float = 0.0  # weight of the MSE of the size×size block means; 0 = the paper's Eq. 2 alone
    lowfreq_size: int = 8  # block side, in pixels
    shrink_jitter: float = 0.0  # train through a per-crop threshold drawn from model.shrink × [1 − j, 1 + j]
    lr_added: float = 0.0  # scratch with init: lr of the weights load_weights adds (fresh); 0 = lr
    streak_map: bool = False  # train through the threshold per pixel (model.shrink_streaks on the input's streaks)
    rain_weight: float = 0.0  # the rain's pixels count (1 + this)× in Eq. 2's image MSE (`losses.rain_pixel_loss`)
    rain_level: float = 2.5  # grey levels: a pixel is the rain's where the input exceeds the target by more

    def __post_init__(self):
        super().__post_init__()
        if self.lr_added < 0:
            raise ValueError(f"lr_added must be non-negative, got {self.lr_added}")
        if self.lowfreq < 0 or self.lowfreq_size < 1:
            raise ValueError(f"lowfreq must be non-negative and lowfreq_size at least 1, got {self.lowfreq} and {self.lowfreq_size}")
        if self.rain_weight < 0 or self.rain_level < 0:
            raise ValueError(f"rain_weight and rain_level must be non-negative, got {self.rain_weight} and {self.rain_level}")
        if not 0 <= self.shrink_jitter < 1:
            raise ValueError(f"shrink_jitter must be in [0, 1), got {self.shrink_jitter}")


@dataclass
class FinetuneConfig(RestorationConfig):
    lr_encoder: float = 4e-5  # E_stu's lr; `lr` is the fresh D_dr's

    def __post_init__(self):
        super().__post_init__()
        if self.lr_encoder <= 0:
            raise ValueError(f"lr_encoder must be positive, got {self.lr_encoder}")


STAGE_CONFIGS = {"recog": RecogConfig, "recon": StageConfig, "distill": DistillConfig,
                 "finetune": FinetuneConfig, "scratch": RestorationConfig}


@dataclass
class SynthConfig:
    """Fine-tuning pairs made by `derain.data.synthesis` into RUN/data/synth-<rain_model>."""

    clean: str | None = None  # a folder of clean images, searched recursively
    rain_model: str = "linear"  # linear (Rain1200-like, as the paper's pairs) | photoshop | camera
    count: int = 200  # number of pairs
    crop: int | None = None  # synthesise on random crop×crop windows instead of whole images
    params: dict = field(default_factory=dict)  # overrides of synthesis.DEFAULTS[rain_model], e.g. density: [0.02, 0.08]
    online: bool = False  # draw rain per crop from the rain families instead (no pairs on disk)
    families: dict = field(default_factory=dict)  # online: family weights; {} = families.TRAIN_WEIGHTS
    family_params: dict = field(default_factory=dict)  # online: a family's ranges replaced, e.g. heavy: {width: [1, 5]}
    bank: list = field(default_factory=list)  # online: real rainy photos (files or folders) for the `real` family
    samples_per_epoch: int = 4096  # online: crops per epoch (each with fresh rain)
    negatives: int = 1  # online: a no-rain crop is the most detailed of this many random crops
    detailed_rain: int = 1  # online: a rainy crop is the most detailed of this many (rain over fine scene lines)
    aligned_rain: int = 1  # online: or the one of this many with most bright thin lines along the rain's directions
    aligned_negatives: int = 1  # online: a no-rain crop is instead the one of this many with most such lines
    harm_maps: str | None = None  # online: a model's change on each training photo (scripts/harm_maps.py)
    harmed_negatives: int = 1  # online: or the one of this many that the harm maps' model changes most
    zoom: float = 1.0  # online: the most a zoomed crop is enlarged (bicubic), before its rain
    zoom_share: float = 0.0  # online: the share of crops that are a smaller window, zoomed

    def __post_init__(self):
        try:
            if self.families:
                check_weights(self.families)
            check_overrides(self.family_params)
        except DerainError as exc:
            raise ValueError(str(exc)) from None
        if self.rain_model not in RAIN_MODELS:
            raise ValueError(f"rain_model must be one of {list(RAIN_MODELS)}, got {self.rain_model!r}")
        picks = (self.count, self.negatives, self.detailed_rain, self.aligned_rain, self.aligned_negatives,
                 self.harmed_negatives)
        if min(picks) < 1 or (self.crop is not None and self.crop < 1):
            raise ValueError("count, negatives, detailed_rain, aligned_rain, aligned_negatives, harmed_negatives and "
                             "crop must be at least 1")
        if self.harmed_negatives > 1 and not self.harm_maps:
            raise ValueError("harmed_negatives needs harm_maps (scripts/harm_maps.py)")
        if self.zoom < 1 or not 0 <= self.zoom_share <= 1:
            raise ValueError(f"zoom must be at least 1 and zoom_share within [0, 1], got {self.zoom} and {self.zoom_share}")
        unknown = sorted(set(self.params) - set(RAIN_DEFAULTS[self.rain_model]))
        if unknown:
            raise ValueError(f"params: unknown {self.rain_model} rain parameter(s) {unknown}; "
                             f"known: {sorted(RAIN_DEFAULTS[self.rain_model])}")


@dataclass
class DataConfig:
    demo: bool = False  # build derain.data.demo into RUN/data/demo; it fills the empty entries below
    real_rainy: list[str] = field(default_factory=list)  # RealRain: T_recog label 0, distillation inputs
    real_clear: list[str] = field(default_factory=list)  # RealClear: T_recog label 1, T_recon targets
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 3.0])  # T_recon's Gaussian σ range
    pairs: str | None = None  # a paired dataset (any layout derain.data reads) for finetune and scratch
    synth: SynthConfig = field(default_factory=SynthConfig)  # used when `pairs` is null
    val: str | None = None  # paired validation set, evaluation only
    val_max_images: int = 0  # score only the first N validation pairs; 0 = all
    workers: int = 0  # DataLoader worker processes per rank
    holdout: float = 0.0  # share of the clean photos (real_clear, synth.clean) kept out of training by a
                          # hash of their names, each with its near-duplicates (data.duplicates): the
                          # validation suite's photos (`derain suite`); 0 = none.
                          # T_recog holds out the same share of real_rainy, to measure it on.

    def __post_init__(self):
        if len(self.blur_sigma) != 2 or not 0 <= self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must be [low, high] with 0 <= low <= high, got {self.blur_sigma}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.val_max_images < 0 or self.workers < 0:
            raise ValueError("val_max_images and workers must be non-negative")


@dataclass
class TrainConfig:
    model: ModelConfig
    student: ModelConfig
    data: DataConfig
    stages: dict[str, StageConfig]
    pipeline: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = True  # deterministic algorithms (bit-exact resume on the CPU)
    amp: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # bf16 autocast on a CPU with bf16 instructions (AVX-512 BF16, AMX) too

    def to_dict(self) -> dict:
        """The resolved config, itself a valid config file."""
        return {
            "model": self.model.to_dict(), "student": self.student.to_dict(), "pipeline": list(self.pipeline),
            "seed": self.seed, "device": self.device, "deterministic": self.deterministic, "amp": self.amp,
            "cpu_bf16": self.cpu_bf16,
            "data": dataclasses.asdict(self.data),
            "stages": {name: dataclasses.asdict(cfg) for name, cfg in self.stages.items()},
        }


SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig)  # the run-wide fields
                 if f.name not in ("model", "student", "data", "stages"))
TOP_LEVEL = ("model", "student", *SETTINGS, "data", "train", "stages")


def load_train_config(source: str | Path | dict, name: str | None = None,
                      overrides: list[str] = ()) -> TrainConfig:
    """Parse a YAML file or a mapping into a TrainConfig; every problem is a one-line DerainError.
    `overrides` are `KEY.PATH=YAML` strings (`derain train --set`) applied on top before checking."""
    if isinstance(source, dict):
        data, name = source, name or "config"
    else:
        data, name = read_yaml(source), name or str(source)
    data = apply_overrides(data, overrides)
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise DerainError(f"{name}: {unknown[0]}: unknown key; known keys are {', '.join(TOP_LEVEL)}")
    if "model" not in data:
        raise DerainError(f"{name}: model: missing (a preset such as tiny, a model YAML or a mapping)")
    model = load_model_config(data["model"])
    student = _student_config(data.get("student"), model, name)

    defaults = _mapping(data.get("train"), f"{name}: train")
    _build(StageConfig, defaults, f"{name}: train")  # reports a bad default under `train`
    per_stage = _mapping(data.get("stages"), f"{name}: stages")
    unknown = sorted(set(per_stage) - set(STAGES))
    if unknown:
        raise DerainError(f"{name}: stages.{unknown[0]}: unknown stage; the stages are {', '.join(STAGES)}")
    stages = {stage: _build(cls, {**defaults, **_mapping(per_stage.get(stage), f"{name}: stages.{stage}")},
                            f"{name}: stages.{stage}")
              for stage, cls in STAGE_CONFIGS.items()}

    top = {k: v for k, v in data.items() if k in SETTINGS}
    settings = {k: _coerce(v, typing.get_type_hints(TrainConfig)[k], f"{name}: {k}") for k, v in top.items()}
    cfg = TrainConfig(model=model, student=student, data=_build(DataConfig, data.get("data"), f"{name}: data"),
                      stages=stages, **settings)
    if cfg.device not in DEVICES:
        raise DerainError(f"{name}: device: expected one of {', '.join(DEVICES)}, got {cfg.device!r}")
    bad = [s for s in cfg.pipeline if s not in STAGES]
    if bad:
        raise DerainError(f"{name}: pipeline: unknown stage {bad[0]!r}; the stages are {', '.join(STAGES)}")
    jittered = [s for s in ("finetune", "scratch") if cfg.stages[s].shrink_jitter and not cfg.student.shrink]
    if jittered:
        raise DerainError(f"{name}: stages.{jittered[0]}.shrink_jitter: set, but model.shrink is 0 (no threshold to draw)")
    mapped = [s for s in ("finetune", "scratch") if cfg.stages[s].streak_map and not cfg.student.shrink_streaks]
    if mapped:
        raise DerainError(f"{name}: stages.{mapped[0]}.streak_map: set, but model.shrink_streaks is 0 (no map to train through)")
    return cfg


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of `data` with each `a.b.c=VALUE` set; VALUE is YAML (`[recog]`, `3000`, `[-20, 20]`)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not all(key.split(".")):
            raise DerainError(f"--set {item}: expected KEY.PATH=VALUE, e.g. stages.distill.teachers=[recog]")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise DerainError(f"--set {item}: the value is not valid YAML") from None
        *parents, leaf = key.split(".")
        node = data
        for i, part in enumerate(parents):
            if node.get(part) is None:  # absent or `null` in the YAML
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise DerainError(f"--set {item}: {'.'.join(parents[:i + 1])} is not a mapping")
        node[leaf] = value
    return data


def _student_config(spec, model: ModelConfig, name: str) -> ModelConfig:
    if spec is None:
        return model
    student = load_model_config({**model.to_dict(), **spec} if isinstance(spec, dict) else spec)
    if (student.patch_size, student.in_chans) != (model.patch_size, model.in_chans):
        raise DerainError(f"{name}: student: patch_size and in_chans must equal the teachers' "
                          f"({model.patch_size}, {model.in_chans}) so that features align")
    return student


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DerainError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _build(cls, value, where: str):
    """A dataclass from a mapping: unknown keys refused, values type-checked, __post_init__ checks reported."""
    value = _mapping(value, where)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise DerainError(f"{where}.{unknown[0]}: unknown key; known keys are {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(v, hints[key], f"{where}.{key}") for key, v in value.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise DerainError(f"{where}: {exc}") from None


def _coerce(value, kind, where: str):
    """Check (and lightly convert) one value against a field's type."""
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where)
    args = typing.get_args(kind)
    if type(None) in args:  # `X | None`
        return None if value is None else _coerce(value, next(a for a in args if a is not type(None)), where)
    if typing.get_origin(kind) is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(items)]
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise DerainError(f"{where}: expected {kind.__name__}, got {value!r}")


# ---- dataset paths: resolved and checked per selected stage, before any work starts ----

NEEDS = {"recog": ("real_rainy", "real_clear"), "recon": ("real_clear",), "distill": ("real_rainy",)}


def resolve_data(data: DataConfig, stages: list[str], demo: dict[str, Path] | None = None) -> DataConfig:
    """Absolute paths, globs expanded and demo folders filled in; refuses missing data the stages need."""
    if demo:
        data = dataclasses.replace(
            data, real_rainy=data.real_rainy or [str(demo["rainy"])],
            real_clear=data.real_clear or [str(demo["clean"])], val=data.val or str(demo["paired"]),
            synth=dataclasses.replace(data.synth, clean=data.synth.clean or str(demo["clean"])))
    needed = {key for stage in stages for key in NEEDS.get(stage, ())}
    # only the folders a selected stage reads are checked: a scratch run need not have real rain
    folders = {key: _expand(getattr(data, key), f"data.{key}") for key in sorted(needed)}
    for key in sorted(needed):
        if not folders[key]:
            users = [s for s in stages if key in NEEDS.get(s, ())]
            raise DerainError(f"data.{key}: empty, but stage {users[0]} needs it")
    pairs = _existing(data.pairs, "data.pairs")
    synth_clean = _existing(data.synth.clean, "data.synth.clean")
    if {"finetune", "scratch"} & set(stages) and not (pairs or synth_clean):
        raise DerainError("data.pairs and data.synth.clean are both empty; finetune and scratch need pairs")
    return dataclasses.replace(data, **folders, pairs=pairs, val=_existing(data.val, "data.val"),
                               synth=dataclasses.replace(data.synth, clean=synth_clean))


def _expand(entries: list[str], where: str) -> list[str]:
    folders = []
    for entry in entries:
        if glob.has_magic(entry):
            matches = sorted(p for p in glob.glob(entry) if Path(p).is_dir())
            if not matches:
                raise DerainError(f"{where}: {entry}: the pattern matches no folder")
            folders += [str(Path(p).resolve()) for p in matches]
        else:
            folders.append(_existing(entry, where))
    return folders


def _existing(path: str | None, where: str) -> str | None:
    if path is None:
        return None
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise DerainError(f"{where}: {path}: not found (relative paths start at {Path.cwd()})")
    return str(resolved)
