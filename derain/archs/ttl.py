"""The networks of the TTL pipeline (paper Fig. 3), each an encoder plus one decoder.

    RecogNet = E_recog + D_recog     (T_recog, Eq. 1)
    ImageNet = E + D_image           (T_recon with D_recon, Eq. 2; the deraining net E_stu + D_dr)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from derain.archs.decoders import ImageDecoder, RecogDecoder
from derain.archs.encoder import Encoder
from derain.config import ModelConfig, load_model_config


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class RecogNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = RecogDecoder(cfg.dim, cfg.spp_kernels)
        self.apply(init_weights)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(img))


class ImageNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = ImageDecoder(cfg.dim, cfg.spp_kernels, cfg.in_chans, cfg.patch_size, cfg.detail_dim,
                                    cfg.darken_only, cfg.shrink, cfg.context_dim)
        self.apply(init_weights)

    def forward(self, img: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.encoder(img), img, threshold)


def create_model(config="default", head: str = "image") -> nn.Module:
    """Build a network from a preset name, a YAML path, a dict or a ModelConfig.
    head='image' gives E + D_recon/D_dr; head='recog' gives E + D_recog."""
    cfg = load_model_config(config)
    if head == "image":
        return ImageNet(cfg)
    if head == "recog":
        return RecogNet(cfg)
    raise ValueError(f"unknown head {head!r}; expected 'image' or 'recog'")
