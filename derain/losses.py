"""The paper's losses (Eq. 1-5).

The paper writes each loss as a sum over the M training samples, Σᵢ ‖·‖². Here every squared
norm is a mean (MSE) over its elements and the batch, so a loss's scale does not depend on the
batch or image size; the terms that the paper adds are still added.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from derain.data import gradients


def recog_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1, L_recog = Σᵢ ‖o_recog^i − l_recog^i‖², as a mean: D_recog's raw score regressed
    onto the label l ∈ {0 rainy, 1 rain-free}."""
    return F.mse_loss(scores, labels.to(scores.dtype))


def recon_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2, L_recon = Σᵢ ‖O − C‖² + ‖∇O − ∇C‖², as means: the image MSE plus the MSE of the
    horizontal and of the vertical gradients (`derain.data.gradients`). Also the fine-tuning loss."""
    (out_dx, out_dy), (tgt_dx, tgt_dy) = gradients(output), gradients(target)
    return F.mse_loss(output, target) + F.mse_loss(out_dx, tgt_dx) + F.mse_loss(out_dy, tgt_dy)


def lowfreq_loss(output: torch.Tensor, target: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Not in the paper: the MSE of the size×size block means, i.e. the error in local brightness, which
    Eq. 2's per-pixel MSE weighs no more than a streak. A uniform shift δ costs δ² here; a 1-px line
    across an 8-px block costs 1/8 of its per-pixel error."""
    return F.mse_loss(F.avg_pool2d(output, size, ceil_mode=True), F.avg_pool2d(target, size, ceil_mode=True))


def rain_pixel_loss(output: torch.Tensor, target: torch.Tensor, inputs: torch.Tensor, level: float) -> torch.Tensor:
    """Not in the paper: the squared error on the pixels where the rain lifts the input over the target by more
    than `level` (0-1 scale) in some channel, as a mean over all pixels. Added to Eq. 2, it counts the rain's
    pixels more, so a faint streak the network is unsure of is not shrunk toward no change."""
    rain = ((inputs - target).amax(1, keepdim=True) > level).to(output.dtype)
    return ((output - target) ** 2 * rain).mean()


def restoration_loss(output: torch.Tensor, target: torch.Tensor, lowfreq: float = 0.0, size: int = 8,
                     inputs: torch.Tensor | None = None, rain_weight: float = 0.0, rain_level: float = 0.0) -> torch.Tensor:
    """Eq. 2 plus `lowfreq` × `lowfreq_loss` and `rain_weight` × `rain_pixel_loss` (which needs the `inputs`):
    stage keys for fine-tuning and V2."""
    loss = recon_loss(output, target)
    if lowfreq:
        loss = loss + lowfreq * lowfreq_loss(output, target, size)
    if rain_weight:
        if inputs is None:
            raise ValueError("rain_weight needs the rainy inputs")
        loss = loss + rain_weight * rain_pixel_loss(output, target, inputs, rain_level)
    return loss


def _summed_mse(students: Sequence[torch.Tensor], teachers: Sequence[torch.Tensor]) -> torch.Tensor:
    if len(students) != len(teachers) or not students:
        raise ValueError(f"expected one student tensor per teacher, got {len(students)} and {len(teachers)}")
    return sum(F.mse_loss(s, t) for s, t in zip(students, teachers))


def kd_direct_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 3, L_kdd = Σᵢ ‖E_stu(I) − E_recog(I)‖² + ‖E_stu(I) − E_recon(I)‖², as a sum of MSEs:
    `student_feats[k]` is E_stu(I) (projected to teacher k's width), `teacher_feats[k]` is E_k(I)."""
    return _summed_mse(student_feats, teacher_feats)


def kd_indirect_loss(student_outputs: Sequence[torch.Tensor],
                     teacher_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 4, L_kdi = Σᵢ ‖D_recog(E_stu(I)) − D_recog(E_recog(I))‖² + ‖D_recon(E_stu(I)) − D_recon(E_recon(I))‖²,
    as a sum of MSEs: `student_outputs[k]` is teacher k's frozen decoder applied to the student's
    features, `teacher_outputs[k]` the same decoder applied to the teacher's own."""
    return _summed_mse(student_outputs, teacher_outputs)


def kd_loss(direct: torch.Tensor, indirect: torch.Tensor) -> torch.Tensor:
    """Eq. 5, L_kd = L_kdd + L_kdi."""
    return direct + indirect
