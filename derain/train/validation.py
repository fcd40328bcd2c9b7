"""Scoring a stage's network on data.val during training: restoration by Y-PSNR/SSIM, T_recog by
balanced accuracy. The first key of a score dict decides which weights are the stage's best."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from derain.api import Derainer
from derain.data import Pair, load_pair_uint8
from derain.data.datasets import to_tensor
from derain.metrics import mean_psnr, psnr, ssim


def validate_restoration(net: nn.Module, pairs: list[Pair], device: torch.device) -> dict[str, float]:
    """Mean Y-PSNR (each capped at 100 dB: a clean photo may come back unchanged) and SSIM (derain.metrics,
    MATLAB protocol) of the net's uint8 outputs on whole images,
    derained as `derain.load` does (large images in tiles), but upright: `--rain-angle auto`'s turns are
    no part of what training learns, and the runs before it (session 46) were scored upright."""
    derainer = Derainer(net.eval(), device, rain_angle=None)
    scores = []
    for pair in pairs:
        rainy, clean = load_pair_uint8(pair)
        output = derainer(rainy)
        scores.append((psnr(output, clean), ssim(output, clean)))
    net.train()
    return {"val_psnr": mean_psnr([p for p, _ in scores]), "val_ssim": float(np.mean([s for _, s in scores]))}


@torch.no_grad()
def validate_recog(net: nn.Module, pairs: list[Pair], device: torch.device) -> dict[str, float]:
    """T_recog on data.val: each pair's rainy image should score rainy (< 0.5) and its clean photo
    rain-free (> 0.5); a pair whose rainy image is its clean photo (the suite's `none`) counts as clean
    only. Balanced accuracy: the mean of the two classes' accuracies."""
    net.eval()
    called_clear: dict[str, list[bool]] = {"rainy": [], "clear": []}
    clean_seen = set()
    for pair in pairs:
        rainy, clean = load_pair_uint8(pair)
        images = [] if np.array_equal(rainy, clean) else [("rainy", rainy)]
        if str(pair.clean) not in clean_seen:
            clean_seen.add(str(pair.clean))
            images.append(("clear", clean))
        for label, img in images:
            called_clear[label].append(float(net(to_tensor(img / 255.0)[None].to(device))) > 0.5)
    net.train()
    rainy_acc = 1 - float(np.mean(called_clear["rainy"])) if called_clear["rainy"] else float("nan")
    clear_acc = float(np.mean(called_clear["clear"]))
    return {"val_balanced_accuracy": (rainy_acc + clear_acc) / 2, "val_rainy_accuracy": rainy_acc,
            "val_clear_accuracy": clear_acc}


def describe(stage: str, step: int, scores: dict[str, float], best: dict[str, float]) -> str:
    """One progress line for a validation."""
    key = next(iter(scores))
    if key == "val_psnr":
        return (f"{stage} step {step}: val Y-PSNR {scores['val_psnr']:.2f} dB, SSIM {scores['val_ssim']:.4f} "
                f"(best {best['val_psnr']:.2f} dB at step {best['step']})")
    return (f"{stage} step {step}: val balanced accuracy {scores[key]:.1%} (rainy "
            f"{scores['val_rainy_accuracy']:.1%}, clear {scores['val_clear_accuracy']:.1%}; best "
            f"{best[key]:.1%} at step {best['step']})")
