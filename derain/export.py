"""ONNX export with dynamic batch, height and width.

The graph takes `image`, N×3×H×W float32 in [0, 1], for any H and W, and returns `derained`, the
same shape (not clipped). Inside the graph the image is edge-padded to multiples of
patch_size × window_size (16 for the shipped presets), derained and cropped back:

- for H and W that are multiples of 16, onnxruntime matches PyTorch (within 1e-4);
- for other sizes the graph matches PyTorch run on the edge-padded image. PyTorch on the unpadded
  image masks the padding instead, so the two differ a little near the bottom and right borders.

While exporting, the window attention builds its index maps and shift mask from tensor ops on
the symbolic sizes instead of its cached Python-built ones (`aglf_vit.export_attention_mask`).
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from derain.errors import DerainError
from derain.atomic import atomic_write

@contextmanager
def quiet_exporter():
    """Hide the exporter's notes about optional packages and its internal deprecation warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


class GridPadded(nn.Module):
    """Edge-pads the image to multiples of patch × window, runs the network, crops back.

    Written so that the padded size, align·ceil(H/align), is visibly a multiple of every
    stride inside the network: the exporter then needs no size-dependent branches."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.align = net.config.patch_size * net.config.window_size

    def forward(self, img: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
        H, W = img.shape[-2:]
        Hp, Wp = (H + self.align - 1) // self.align * self.align, (W + self.align - 1) // self.align * self.align
        pad = (0, Wp - W, 0, Hp - H)
        threshold = None if threshold is None else F.pad(threshold, pad, mode="replicate")
        return self.net(F.pad(img, pad, mode="replicate"), threshold)[..., :H, :W]


def export_onnx(net: torch.nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write `net` as an ONNX file with dynamic batch, height and width. A model with `shrink_streaks` takes
    a second input, D_dr's threshold per pixel (N×1×H×W, from derain.inference.streak_threshold)."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise DerainError("ONNX export needs onnx and onnxscript: pip install onnx onnxscript "
                          "(or, in a checkout, pip install -e '.[onnx]')") from None
    net = net.cpu().eval()
    example = (torch.rand(2, 3, 35, 53),)  # batch 2 and odd sizes, so that nothing specialises on them
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    shapes, names = {"img": dims}, ["image"]
    if net.config.shrink_streaks:
        example, shapes, names = (*example, torch.rand(2, 1, 35, 53) * 0.1), {**shapes, "threshold": dims}, [*names, "threshold"]
    path = Path(path)
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(GridPadded(net).eval(), example, dynamic_shapes=shapes,
                                    input_names=names, output_names=["derained"], opset_version=opset,
                                    dynamo=True, verbose=False)
    atomic_write(path, lambda tmp: program.save(tmp))
    return path
