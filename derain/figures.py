"""Figures made of whole images, shared by `derain demo` and `derain gallery`: downscaling to a
size, panels side by side and contact sheets of panels stacked top to bottom, with white gaps.

Images are H×W×3 uint8 arrays. numpy and Pillow load inside the functions, so importing this
module from a CLI module keeps `derain --help` fast.
"""
from __future__ import annotations

GAP = 8  # white pixels between the images of a panel, and between the panels of a contact sheet


def panel(*images):
    """The images side by side, left to right, GAP white columns apart (all of one height)."""
    return _joined(images, axis=1)


def contact_sheet(panels, width: int):
    """The panels top to bottom, each resized (Lanczos, aspect kept) to `width`, GAP white rows apart."""
    return _joined([_resize(image, width, max(1, round(image.shape[0] * width / image.shape[1])))
                    for image in panels], axis=0)


def fit(image, max_side: int):
    """`image` downscaled (Lanczos) so its longer side is at most `max_side`; as is when it fits or 0."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    return _resize(image, max(1, round(width * scale)), max(1, round(height * scale)))


def _resize(image, width: int, height: int):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def _joined(images, axis: int):
    """The images concatenated along `axis` (1: side by side, 0: stacked) with GAP white lines between."""
    import numpy as np

    shape = list(images[0].shape)
    shape[axis] = GAP
    gap = np.full(shape, 255, np.uint8)
    return np.concatenate([part for image in images for part in (gap, image)][1:], axis=axis)
