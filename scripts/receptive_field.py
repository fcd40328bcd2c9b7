"""How far a model looks: the effective receptive field of its output at one pixel, measured by autograd.

    python scripts/receptive_field.py --model bundled [--size 288] [--points 4]

For each of scikit-image's demo photos (derain.data.demo.PHOTOS, central SIZE² crops) and POINTS output
pixels near the centre (offset so that window boundaries fall differently), the gradient of the raw output
(threshold and cap off) at that pixel with respect to every input pixel, summed over channels as |grad|. Its
mass, averaged over photos and points, is binned by distance from the pixel (the Chebyshev radius: a square
of side 2r + 1). Printed: the radii holding 50%, 90% and 99% of the mass, and the farthest input pixel with
any gradient at all (the theoretical field, capped by the crop). A rain streak the model should remove has to
sit well inside the 90% radius, with scene around it, for the model to tell it from the scene's own lines.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from derain.api import load_network
from derain.data.demo import PHOTOS, load_photo

from threshold_margin import raw_decoder


def gradient_mass(net: torch.nn.Module, img: np.ndarray, y: int, x: int) -> np.ndarray:
    """H×W map of |d out[:, y, x] / d input| summed over input channels, for the sum of out's channels."""
    inp = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    out = net(inp)
    out[0, :, y, x].sum().backward()
    return inp.grad[0].abs().sum(0).numpy()


def radii(mass: np.ndarray, y: int, x: int, shares=(0.5, 0.9, 0.99)) -> tuple[list[int], int]:
    """Chebyshev radii around (y, x) that hold each share of the mass, and the farthest nonzero pixel."""
    yy, xx = np.indices(mass.shape)
    dist = np.maximum(np.abs(yy - y), np.abs(xx - x))
    per_radius = np.bincount(dist.ravel(), weights=mass.ravel())
    cum = np.cumsum(per_radius) / per_radius.sum()
    found = [int(np.searchsorted(cum, s)) for s in shares]
    farthest = int(dist[mass > mass.max() * 1e-6].max())
    return found, farthest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--size", type=int, default=288, help="side of the central crop of each photo (at most 300, chelsea's height)")
    parser.add_argument("--points", type=int, default=4, help="output pixels per photo, near the centre")
    args = parser.parse_args()
    net = load_network(args.model).eval()
    s = args.size
    offsets = [(0, 0), (3, 5), (7, 2), (5, 9), (11, 13), (2, 15)][: args.points]
    total = np.zeros((s, s))
    for name in PHOTOS:
        photo = load_photo(name)
        top, left = (photo.shape[0] - s) // 2, (photo.shape[1] - s) // 2
        if top < 0 or left < 0:
            raise SystemExit(f"receptive_field: {name} is smaller than --size {s}")
        crop = photo[top:top + s, left:left + s]
        for dy, dx in offsets:
            y, x = s // 2 + dy, s // 2 + dx
            with raw_decoder(net):  # the threshold and cap would zero most gradients
                m = gradient_mass(net, crop, y, x)
            # re-centre on the common pixel so the maps add up
            total += np.roll(m, (s // 2 - y, s // 2 - x), axis=(0, 1)) / m.sum()
    (r50, r90, r99), farthest = radii(total, s // 2, s // 2)
    print(f"model {args.model}: {len(PHOTOS)} photos x {len(offsets)} points, {s}² crops")
    print(f"gradient mass within a radius of  50%: {r50} px   90%: {r90} px   99%: {r99} px   "
          f"(squares of {2 * r50 + 1}, {2 * r90 + 1}, {2 * r99 + 1} px)")
    print(f"farthest input pixel with any gradient: {farthest} px" + ("  (the crop's edge)" if farthest >= s // 2 - 16 else ""))


if __name__ == "__main__":
    main()
