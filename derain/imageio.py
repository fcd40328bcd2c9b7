"""Reading and writing images as RGB arrays, with one-line errors that name the file.

`open_image` gives the decoded, upright PIL image; `to_float` and `to_uint8` turn it into an
H×W×3 array. `read_image` and `read_image_uint8` chain the two. Every problem with a file
(missing, empty, truncated, not an image, too large) raises `DerainError("<path>: <problem>")`.
AVIF needs a Pillow built with it (its wheels have it); HEIC/HEIF, the iPhone's format, the optional
pillow-heif package (`pip install 'derain[heif]'`).
"""
from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from derain.atomic import atomic_path
from derain.errors import DerainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF"}
LOSSY_FORMATS = ("JPEG", "WEBP", "AVIF", "HEIF")  # those that take a quality


def is_image_file(path: str | Path) -> bool:
    """True for a file name with a known image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def ensure_codec(path: str | Path) -> None:
    """Let Pillow read and write `path`'s format, or say in one line what to install."""
    problem = codec_problem(Path(path).suffix)
    if problem:
        raise DerainError(f"{path}: {problem}")


def codec_problem(suffix: str) -> str | None:
    """What is missing to read and write files with this extension, or None (registers pillow-heif for HEIC)."""
    suffix = suffix.lower()
    if suffix in (".heic", ".heif") and not heif_registered():
        return "HEIC/HEIF photos need the pillow-heif package: pip install 'derain[heif]'"
    if suffix == ".avif" and not features.check("avif"):
        return "this Pillow was built without AVIF; pip install -U pillow"
    return None


@cache
def heif_registered() -> bool:
    """Register pillow-heif's HEIC/HEIF plugin with Pillow; False when pillow-heif is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def open_image(path: str | Path) -> Image.Image:
    """Decode a file fully and rotate it upright according to its EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise DerainError(f"{path}: {'not a file' if path.exists() else 'file not found'}")
    if path.stat().st_size == 0:
        raise DerainError(f"{path}: empty file (0 bytes)")
    ensure_codec(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return ImageOps.exif_transpose(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DerainError(f"{path}: image too large (over {Image.MAX_IMAGE_PIXELS} pixels), "
                          "refusing a possible decompression bomb") from None
    except UnidentifiedImageError:
        raise DerainError(f"{path}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DerainError(f"{path}: cannot decode image ({reason})") from None


def to_float(img: Image.Image) -> np.ndarray:
    """H×W×3 float32 in [0, 1]. 16-bit data is divided by 65535, alpha is dropped, gray is repeated.

    Pillow itself reduces 48-bit RGB files to 8 bits per channel; 16-bit grayscale keeps full precision.
    """
    if img.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if img.mode == "F":
        return np.repeat(np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=2)
    return np.asarray(_to_rgb(img), dtype=np.float32) / 255.0


def to_uint8(img: Image.Image) -> np.ndarray:
    """H×W×3 uint8; 16-bit data is rounded to the nearest 8-bit level."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        return np.round(to_float(img) * 255.0).astype(np.uint8)
    return np.asarray(_to_rgb(img), dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids Pillow's warning about palette transparency
    return img.convert("RGB")


def read_image(path: str | Path) -> np.ndarray:
    """Read any supported image as H×W×3 float32 in [0, 1]."""
    return to_float(open_image(path))


def read_image_uint8(path: str | Path) -> np.ndarray:
    """Read any supported image as H×W×3 uint8 (what the PSNR/SSIM protocols expect)."""
    return to_uint8(open_image(path))


def to_pil(arr: np.ndarray) -> Image.Image:
    """A uint8 array, or a float array in [0, 1] (rounded), H×W or H×W×3, as a PIL image."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise DerainError(f"cannot write an array of shape {arr.shape}; expected H×W or H×W×3")
    return Image.fromarray(arr)


def write_image(path: str | Path, arr: np.ndarray, quality: int = 95) -> Path:
    """Write atomically: a temporary file in the same folder, then `os.replace`. Parents are created.

    `quality` applies to JPEG, WebP, AVIF and HEIC. The format follows the extension.
    """
    return save_pil(path, to_pil(arr), quality=quality)


def save_pil(path: str | Path, img: Image.Image, quality: int = 95, **options) -> Path:
    """Save a PIL image atomically; `options` go to `Image.save` (for example `exif=...`)."""
    path = Path(path)
    fmt = _PIL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DerainError(f"{path}: unsupported output extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    ensure_codec(path)
    if fmt in LOSSY_FORMATS and "qtables" not in options:  # JPEG tables are a quality of their own
        options["quality"] = int(quality)
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **options)
    return path
