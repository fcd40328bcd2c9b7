"""The stages of Fig. 3 plus V2: which networks train, on which data, with which loss, and what they leave.

    recog     E_recog + D_recog on real rainy (0) and real clear (1) images           Eq. 1
    recon     E_recon + D_recon on Gaussian-blurred real clear images                Eq. 2
    distill   E_stu from the frozen teachers on real rainy images                    Eq. 3-5
    finetune  E_stu (lr_encoder) + a fresh D_dr (lr) on synthetic pairs               Eq. 2
    scratch   V2: the same E + D_dr from random weights, same pairs and budget       Eq. 2

A stage's `module(batch)` returns {"loss": ..., other parts}; its state_dict is exactly what the stage
trains (frozen teachers are held outside it); `export(module)` writes what later stages and users load.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from derain.archs import Encoder, ImageNet, RecogNet
from derain.archs.aglf_vit import AGLFViTBlock
from derain.archs.ttl import init_weights
from derain.data import (CLEAR_LABEL, RAINY_LABEL, BlurDataset, PairedDataset, RainMixDataset, SyntheticRainyDataset,
                         UnpairedDataset)
from derain.data.datasets import images_in
from derain.data.families import TRAIN_WEIGHTS, holdout
from derain.data.harm import load_harm_maps
from derain.atomic import atomic_write
from derain.config import ModelConfig
from derain.errors import DerainError
from derain.hub import CONFIG_NAME, from_pretrained, resolve_model, save_pretrained
from derain.inference import streak_threshold
from derain.losses import kd_direct_loss, kd_indirect_loss, kd_loss, recog_loss, recon_loss, restoration_loss
from derain.train.config import STAGES, RestorationConfig, TrainConfig
from derain.train.rundir import RunDir
from derain.train.validation import validate_recog, validate_restoration

BLOCK_KEY = re.compile(r"^(?:.*\.)?blocks\.(\d+)\.")  # an AGLF-ViT block's weights, and its index
DETAIL, OUT_CONV = "decoder.detail.", "decoder.conv."  # D_dr's detail path and its output conv


@dataclass
class Stage:
    name: str
    module: nn.Module
    dataset: Dataset
    param_groups: list[dict]  # Adam's groups; the last one's lr is the one logged
    export: Callable[[nn.Module], None]
    val_net: nn.Module | None = None  # scored on data.val during training (recog, finetune, scratch)
    validate: Callable[[nn.Module, list, torch.device], dict[str, float]] = validate_restoration


class Supervised(nn.Module):
    """A network trained on (input, target) batches with one loss: recog, recon, finetune, scratch.
    A batch may carry a third tensor, D_dr's threshold per pixel (WithStreakMap), which the network runs through."""

    def __init__(self, net: nn.Module, loss: Callable, with_inputs: bool = False):
        super().__init__()
        self.net, self.loss, self.with_inputs = net, loss, with_inputs

    def forward(self, batch):
        inputs, targets, *threshold = batch
        extra = {"inputs": inputs} if self.with_inputs else {}
        return {"loss": self.loss(self.net(inputs, *threshold), targets, **extra)}


class WithStreakMap(Dataset):
    """`streak_map`: each (input, target) pair plus its input's threshold per pixel (streak_threshold), made
    where the pairs are made (in the DataLoader's workers when data.workers > 0), not in the training step."""

    def __init__(self, pairs: Dataset, model: ModelConfig):
        self.pairs, self.model = pairs, model

    def __len__(self):
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.pairs.set_epoch(epoch)

    def __getitem__(self, index):
        inputs, targets = self.pairs[index]
        return inputs, targets, streak_threshold(self.model, inputs[None])[0]


def decode(teacher: nn.Module, feats: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """A teacher's decoder on some features: D_recon also needs the input image for its residual."""
    return teacher.decoder(feats, images) if isinstance(teacher, ImageNet) else teacher.decoder(feats)


class Distillation(nn.Module):
    """Eq. 3-5: E_stu matches each frozen teacher's features (direct) and, through the teacher's frozen
    decoder, its output (indirect). A narrower student reaches a teacher's width through a learned 1×1
    projection, which is discarded after distillation."""

    def __init__(self, student: Encoder, student_dim: int, teachers: dict[str, nn.Module]):
        super().__init__()
        self.student = student
        self.project = nn.ModuleDict({
            name: nn.Identity() if t.config.dim == student_dim else nn.Conv2d(student_dim, t.config.dim, 1)
            for name, t in teachers.items()})
        self.teachers = {name: t.requires_grad_(False).eval() for name, t in teachers.items()}  # not submodules

    def forward(self, batch):
        images, _ = batch
        feats = self.student(images)
        student_feats, teacher_feats, student_outs, teacher_outs = [], [], [], []
        for name, teacher in self.teachers.items():
            with torch.no_grad():
                teacher_feats.append(teacher.encoder(images))
                teacher_outs.append(decode(teacher, teacher_feats[-1], images))
            student_feats.append(self.project[name](feats))
            student_outs.append(decode(teacher, student_feats[-1], images))
        direct = kd_direct_loss(student_feats, teacher_feats)
        indirect = kd_indirect_loss(student_outs, teacher_outs)
        return {"loss": kd_loss(direct, indirect), "kd_direct": direct, "kd_indirect": indirect}


def build_stage(name: str, cfg: TrainConfig, run: RunDir, device: torch.device) -> Stage:
    """A stage with freshly initialised weights, seeded by (seed, stage), the same on every rank."""
    torch.manual_seed(cfg.seed + STAGES.index(name))
    return BUILDERS[name](cfg, run, device)


def load_weights(net: nn.Module, spec: str) -> list[str]:
    """`net`'s weights from the model `spec` names (derain.hub.resolve_model); the architectures must match,
    except that `net` may add a dilated context branch (`context_dim`), which starts where it was built: at
    zero, and AGLF-ViT blocks past the init's depth (`depth`), which start as the identity. Either way `net`
    starts out computing what the init did. `net` may also lack the init's detail path (`detail_dim` 0):
    the path is dropped and D_dr's output conv, whose shape it sets, keeps its fresh weights (not zero: through
    a `shrink` threshold a zero residual gets no gradient). Returns the added (fresh) weights' names."""
    path = resolve_model(spec)
    state, own = from_pretrained(path).state_dict(), net.state_dict()
    if any(k.startswith(DETAIL) for k in state) and not any(k.startswith(DETAIL) for k in own):
        state = {k: v for k, v in state.items() if not k.startswith((DETAIL, OUT_CONV))}
    depth = 1 + max((int(m[1]) for k in state if (m := BLOCK_KEY.match(k))), default=-1)
    deeper = {k for k in own if (m := BLOCK_KEY.match(k)) and int(m[1]) >= depth > 0}
    added = [k for k in own if (".context." in k or k in deeper or k.startswith(OUT_CONV)) and k not in state]
    try:
        net.load_state_dict({**state, **{k: own[k] for k in added}})
    except RuntimeError as exc:
        raise DerainError(f"init {spec}: its network differs from this config's model ({path / 'config.json'}): "
                          f"{str(exc).splitlines()[0]}") from None
    for name, block in net.named_modules():
        if isinstance(block, AGLFViTBlock) and f"{name}.alpha" in deeper:
            block.start_as_identity()
    return added


def save_model(name: str, run: RunDir) -> Callable[[nn.Module], None]:
    return lambda module: save_pretrained(module.net, run.model_dir(name), stage=name)


def save_best_model(name: str, run: RunDir) -> Callable[[nn.Module], None]:
    """The stage's best validation weights (<stage>/best) as its model if it validated, else its last:
    T_recog's loss is noisy for thousands of steps, so its last weights are a noisy draw."""
    def export(module: nn.Module) -> None:
        best = run.stage_dir(name) / "best"
        validated = (best / CONFIG_NAME).is_file()
        if validated:
            module.net.load_state_dict(from_pretrained(best).state_dict())
        save_pretrained(module.net, run.model_dir(name), stage=name, **({"from": "best validation"} if validated else {}))
    return export


def training_photos(folders: list[str], share: float) -> list[Path]:
    """The photos under `folders` minus the held-out share (the validation suite's, for clean photos)."""
    files = [f for folder in folders for f in images_in(folder)]
    return holdout(files, share=share)[0] if share else files


def recog(cfg: TrainConfig, run: RunDir, device) -> Stage:
    s = cfg.stages["recog"]
    clear = training_photos(cfg.data.real_clear, cfg.data.holdout)
    rainy = training_photos(cfg.data.real_rainy, cfg.data.holdout)
    folders = [(f, RAINY_LABEL) for f in rainy] + [(f, CLEAR_LABEL) for f in clear]
    net = RecogNet(cfg.model)
    data = UnpairedDataset(folders, crop=s.crop, seed=cfg.seed, balanced=True)
    if s.synthetic_rain:  # the same clear scenes with rain: T_recog must learn the rain, not the scene
        rain = {family: w for family, w in TRAIN_WEIGHTS.items() if family != "none"}
        data = SyntheticRainyDataset(data, RainMixDataset(clear, crop=s.crop, seed=cfg.seed, weights=rain), s.synthetic_rain)
    return Stage("recog", Supervised(net, recog_loss), data,
                 [{"params": list(net.parameters()), "lr": s.lr}], save_best_model("recog", run), val_net=net,
                 validate=validate_recog)


def recon(cfg: TrainConfig, run: RunDir, device) -> Stage:
    s = cfg.stages["recon"]
    net = ImageNet(replace(cfg.model, darken_only=False, shrink=0.0))  # deblurring brightens as often as it darkens
    return Stage("recon", Supervised(net, recon_loss),
                 BlurDataset(training_photos(cfg.data.real_clear, cfg.data.holdout), crop=s.crop, sigma_range=tuple(cfg.data.blur_sigma), seed=cfg.seed),
                 [{"params": list(net.parameters()), "lr": s.lr}], save_model("recon", run))


def distill(cfg: TrainConfig, run: RunDir, device) -> Stage:
    s = cfg.stages["distill"]
    student = Encoder(cfg.student)
    student.apply(init_weights)
    teachers = {name: from_pretrained(run.model_dir(name), map_location=device) for name in s.teachers}
    module = Distillation(student, cfg.student.dim, teachers)

    def export(module: Distillation) -> None:
        weights = {k: v.detach().cpu().contiguous() for k, v in module.student.state_dict().items()}
        atomic_write(run.student_weights, lambda tmp: save_file(weights, tmp))

    return Stage("distill", module,
                 UnpairedDataset([(f, RAINY_LABEL) for f in cfg.data.real_rainy], crop=s.crop, seed=cfg.seed),
                 [{"params": list(module.parameters()), "lr": s.lr}], export)


def pairs_root(cfg: TrainConfig, run: RunDir) -> Path:
    """The fine-tuning pairs: data.pairs, or the pairs synthesised into the run."""
    return Path(cfg.data.pairs) if cfg.data.pairs else run.synth_dir(cfg.data.synth.rain_model)


def pairs_dataset(cfg: TrainConfig, run: RunDir, s: RestorationConfig) -> Dataset:
    """finetune's and scratch's pairs: data.pairs, rain drawn per crop (synth.online), or synthesised pairs;
    with their threshold maps when the stage trains through them (streak_map)."""
    synth = cfg.data.synth
    if synth.online and not cfg.data.pairs:
        pairs = RainMixDataset(training_photos([synth.clean], cfg.data.holdout), crop=s.crop, seed=cfg.seed,
                               weights=synth.families or None, samples_per_epoch=synth.samples_per_epoch,
                               negatives=synth.negatives, detailed_rain=synth.detailed_rain,
                               overrides=synth.family_params, bank=synth.bank, aligned_rain=synth.aligned_rain,
                               aligned_negatives=synth.aligned_negatives, zoom=synth.zoom, zoom_share=synth.zoom_share,
                               harm_maps=load_harm_maps(synth.harm_maps) if synth.harm_maps else None,
                               harmed_negatives=synth.harmed_negatives)
    else:
        pairs = PairedDataset(pairs_root(cfg, run), crop=s.crop, seed=cfg.seed)
    return WithStreakMap(pairs, cfg.student) if s.streak_map else pairs


def stage_loss(s: RestorationConfig) -> Callable:
    """finetune's and scratch's loss: Eq. 2, plus `lowfreq` × the low-frequency term and `rain_weight` × the
    rain-pixel term when set."""
    return partial(restoration_loss, lowfreq=s.lowfreq, size=s.lowfreq_size, rain_weight=s.rain_weight,
                   rain_level=s.rain_level / 255)


def supervised(net: nn.Module, s: RestorationConfig) -> Supervised:
    """finetune's and scratch's module: the rain-pixel term also needs the inputs."""
    return Supervised(net, stage_loss(s), with_inputs=bool(s.rain_weight))


def finetune(cfg: TrainConfig, run: RunDir, device) -> Stage:
    s = cfg.stages["finetune"]
    net = ImageNet(cfg.student)  # a fresh D_dr
    net.encoder.load_state_dict(load_file(run.student_weights))
    net.decoder.shrink_jitter = s.shrink_jitter
    groups = [{"params": list(net.encoder.parameters()), "lr": s.lr_encoder},
              {"params": list(net.decoder.parameters()), "lr": s.lr}]
    return Stage("finetune", supervised(net, s), pairs_dataset(cfg, run, s),
                 groups, save_model("finetune", run), val_net=net)


def scratch(cfg: TrainConfig, run: RunDir, device) -> Stage:
    s = cfg.stages["scratch"]
    net = ImageNet(cfg.student)
    added = load_weights(net, s.init) if s.init else []  # a warm start: continue a trained network on this stage's data
    net.decoder.shrink_jitter = s.shrink_jitter
    params = dict(net.named_parameters())
    groups = [{"params": [p for k, p in params.items() if k not in added], "lr": s.lr}]
    if added:
        groups.append({"params": [params[k] for k in added], "lr": s.lr_added or s.lr})
    return Stage("scratch", supervised(net, s), pairs_dataset(cfg, run, s),
                 groups, save_model("scratch", run), val_net=net)


BUILDERS = {"recog": recog, "recon": recon, "distill": distill, "finetune": finetune, "scratch": scratch}
