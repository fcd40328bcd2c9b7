"""Figures made of whole images, shared by `derain demo` and `derain gallery`: panels side by side
and contact sheets of panels stacked top to bottom, with white gaps between them.

Images are H×W×3 uint8 arrays. numpy and Pillow load inside the functions, so importing this
module from a CLI module keeps `derain --help` fast.
"""
from __future__ import annotations

GAP = 8  # white pixels between the images of a panel, and between the panels of a contact sheet


def panel(*images):
    """The images side by side, left to right, GAP white columns apart (all of one height)."""
    import numpy as np

    gap = np.full((images[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([part for image in images for part in (gap, image)][1:], axis=1)


def contact_sheet(panels, width: int):
    """The panels top to bottom, each resized (Lanczos, aspect kept) to `width`, GAP white rows apart."""
    import numpy as np
    from PIL import Image

    rows = []
    for image in panels:
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        rows.append(np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)))
    gap = np.full((GAP, width, 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (gap, row)][1:], axis=0)
