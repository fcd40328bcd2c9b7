"""`derain niqe-fit`: fit a NIQE pristine model to a folder of clean photos."""
from __future__ import annotations

from pathlib import Path

from derain.errors import DerainError


def register(sub) -> None:
    p = sub.add_parser(
        "niqe-fit", help="fit a NIQE pristine model to clean photos",
        description="Fit the multivariate Gaussian NIQE measures against: 36 features of every 96x96 "
                    "patch of each photo (as MATLAB rgb2gray), keeping patches sharper than 0.75 x "
                    "the photo's sharpest. Writes an npz with mu_pris_param and cov_pris_param, "
                    "usable as --niqe-params.")
    p.add_argument("folder", type=Path, help="folder of clean, undistorted photos")
    p.add_argument("-o", "--output", type=Path, required=True, help="npz file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from derain.data import list_images
    from derain.evaluation import atomic_path, progress
    from derain.imageio import read_image_uint8
    from derain.metrics import fit_niqe_model
    from derain.metrics.niqe import PATCH_SIZE

    if args.output.suffix != ".npz":
        raise DerainError(f"{args.output}: the output must be an .npz file")
    paths = list_images(args.folder)
    if not paths:
        raise DerainError(f"{args.folder}: no images")
    def photos():
        for path in progress(paths, "fitting"):
            image = read_image_uint8(path)
            if min(image.shape[:2]) < PATCH_SIZE:
                raise DerainError(f"{path}: smaller than one {PATCH_SIZE}x{PATCH_SIZE} NIQE patch")
            yield image

    try:
        model = fit_niqe_model(photos())
    except ValueError as exc:
        raise DerainError(f"{args.folder}: {exc}") from None
    with atomic_path(args.output) as tmp:
        model.save(tmp, sources=np.array([p.relative_to(args.folder).as_posix() for p in paths]))
    eigenvalues = np.linalg.eigvalsh(model.cov)
    print(f"derain niqe-fit: {len(paths)} images -> {args.output} "
          f"(covariance eigenvalues {eigenvalues.min():.3g} .. {eigenvalues.max():.3g})")
    return 0
