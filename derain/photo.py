"""Photos in and out for `derain run`: pixels at their own bit depth and mode, and the metadata
needed to write them back the same way.

`read_photo` validates and decodes through `derain.imageio.open_image` (one-line errors, EXIF
orientation applied, decompression-bomb limit `PIL.Image.MAX_IMAGE_PIXELS`). Pixels come as
numpy arrays: H×W (gray), H×W×2 (gray + alpha), H×W×3 (RGB) or H×W×4 (RGBA), in uint8, uint16
(16-bit gray PNG/TIFF, 16-bit colour TIFF) or float32 (32-bit float TIFF).

Kept on writing: EXIF (JPEG, PNG, WebP, AVIF, HEIC; with the orientation tag removed since pixels are
upright), the ICC profile, the resolution, and for TIFF the descriptive tags (description, make,
model, software, date, artist, copyright) and the compression. Pillow decodes 16-bit colour PNGs
at 8 bits, so those come out as 8-bit PNGs; 16-bit colour TIFFs go through tifffile and stay 16-bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from derain.errors import DerainError
from derain.atomic import atomic_write
from derain.imageio import codec_problem, open_image, save_pil

ORIENTATION = 274
TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)
RGB16 = "RGB;16"  # our mode name for 16-bit colour, which Pillow cannot hold

_SAVE_OPTIONS = {  # which metadata each writer takes
    "JPEG": ("exif", "icc_profile", "dpi", "qtables", "subsampling", "progressive"),
    "PNG": ("exif", "icc_profile", "dpi"),
    "WEBP": ("exif", "icc_profile", "lossless"),
    "AVIF": ("exif", "icc_profile"),
    "HEIF": ("exif", "icc_profile"),
    "TIFF": ("icc_profile", "dpi", "tiffinfo", "compression"),
    "BMP": (),
}
_WRITABLE_MODES = {
    "JPEG": {"L", "RGB", "CMYK"},
    "PNG": {"1", "L", "LA", "RGB", "RGBA", "I;16"},
    "WEBP": {"RGB", "RGBA"},
    "AVIF": {"RGB", "RGBA"},
    "HEIF": {"RGB", "RGBA"},
    "TIFF": {"1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "F", RGB16},
    "BMP": {"1", "L", "RGB", "RGBA"},
}
_TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"}
_GRAY_MODES = {"1", "L", "LA", "I;16", "F"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


@dataclass
class Photo:
    pixels: np.ndarray
    mode: str  # the Pillow mode to write back (or RGB16)
    metadata: dict = field(default_factory=dict)  # save options: exif, icc_profile, dpi, tiffinfo, compression


# ---------------------------------------------------------------- PIL images <-> arrays

def pil_to_array(img: Image.Image) -> tuple[np.ndarray, str]:
    """Pixels of a PIL image and the mode to rebuild it with (palette images become RGB/RGBA)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img), mode
    if mode == "1":
        return np.asarray(img.convert("L")), mode
    if mode == "CMYK":
        return np.asarray(img.convert("RGB")), mode
    if mode in _SIXTEEN_BIT or mode == "I":
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16), "I;16"
    if mode == "F":
        return np.asarray(img, dtype=np.float32), mode
    rgb = "RGBA" if img.has_transparency_data else "RGB"
    return np.asarray(img.convert(rgb)), rgb


def array_to_pil(pixels: np.ndarray, mode: str) -> Image.Image:
    """Inverse of `pil_to_array`."""
    if mode == "1":
        return Image.fromarray(pixels).convert("1", dither=Image.Dither.NONE)
    if mode == "CMYK":
        return Image.fromarray(pixels).convert("CMYK")
    return Image.fromarray(np.ascontiguousarray(pixels))


# ---------------------------------------------------------------- reading

def read_photo(path: str | Path) -> Photo:
    """Decode a photo upright, at its own bit depth, with the metadata to write it back."""
    path = Path(path)
    _check_readable(path)
    img = open_image(path)
    with Image.open(path) as raw:
        metadata = _metadata(img, raw)
        orientation = raw.getexif().get(ORIENTATION, 1)
        deep_colour = raw.format == "TIFF" and _is_16bit_colour(raw)
    if deep_colour:
        return Photo(upright(_read_tiff16(path), orientation), RGB16, metadata)
    pixels, mode = pil_to_array(img)
    return Photo(pixels, mode, metadata)


def _check_readable(path: Path) -> None:
    try:
        open(path, "rb").close()
    except PermissionError:
        raise DerainError(f"{path}: permission denied") from None
    except OSError:
        pass  # missing files, folders and the like get their message from open_image


def _metadata(img: Image.Image, raw: Image.Image) -> dict:
    """Save options from the upright image's info (EXIF without orientation) and the raw file."""
    meta = {key: img.info[key] for key in ("exif", "icc_profile", "dpi") if img.info.get(key)}
    if raw.format == "JPEG" and raw.quantization:  # written back with its own tables unless a quality is given
        from PIL import JpegImagePlugin

        meta["qtables"] = raw.quantization
        if (sampling := JpegImagePlugin.get_sampling(raw)) >= 0:
            meta["subsampling"] = sampling
        if raw.info.get("progressive"):
            meta["progressive"] = True
    if raw.format == "WEBP" and raw.filename and webp_is_lossless(raw.filename):
        meta["lossless"] = True  # written back lossless unless a quality is given
    if raw.format == "TIFF":
        tags = raw.getexif()
        meta["tiffinfo"] = {tag: tags[tag] for tag in TIFF_TEXT_TAGS if isinstance(tags.get(tag), str)}
        if raw.info.get("compression") in _TIFF_COMPRESSIONS:
            meta["compression"] = raw.info["compression"]
    return meta


def webp_is_lossless(path: str | Path) -> bool:
    """Whether a WebP file's image is VP8L (lossless), from its RIFF chunks; Pillow does not say."""
    with open(path, "rb") as f:
        head = f.read(12)
        while head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(chunk := f.read(8)) == 8:
            fourcc, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if fourcc in (b"VP8 ", b"VP8L"):
                return fourcc == b"VP8L"
            f.seek(size + size % 2, 1)  # chunks are padded to an even size
    return False


def _is_16bit_colour(raw: Image.Image) -> bool:
    bits = raw.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return raw.tag_v2.get(277, 1) >= 3 and max(bits) == 16


def _read_tiff16(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            pixels = page.asarray()
            if page.axes.startswith("S"):  # planar: one plane per sample
                pixels = np.moveaxis(pixels, 0, -1)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise DerainError(f"{path}: cannot decode 16-bit TIFF ({exc})") from None
    return pixels[..., :4].astype(np.uint16, copy=False)


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an H×W(×C) array, as `PIL.ImageOps.exif_transpose` does."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(turns[orientation](pixels)) if orientation in turns else pixels


# ---------------------------------------------------------------- writing

def write_problem(path: str | Path) -> str | None:
    """Why derain cannot write a file named `path`, or None: known before any deraining."""
    suffix = Path(path).suffix.lower()
    if problem := codec_problem(suffix):
        return problem
    if Image.registered_extensions().get(suffix) not in _SAVE_OPTIONS:
        return (f"cannot write {suffix or 'a file without an extension'}; write .png, .jpg, .tif, .webp, .bmp, .avif "
                "or .heic instead (derain run --format png)")
    return None


def output_format(path: str | Path) -> str:
    if problem := write_problem(path):
        raise DerainError(f"{path}: {problem}")
    return Image.registered_extensions()[Path(path).suffix.lower()]


def write_photo(path: str | Path, photo: Photo, quality: int | None = None) -> Path:
    """Write atomically in the format of `path`'s extension, converting only what it cannot hold
    (alpha for JPEG, 16 bits outside PNG/TIFF, CMYK outside JPEG/TIFF). Without a `quality`, a JPEG read
    from a JPEG gets that file's quantization tables and chroma subsampling (so pixels the model leaves
    alone come back as they were, in a file of the same size), a WebP from a lossless WebP stays lossless,
    and other lossy files get quality 95."""
    path = Path(path)
    fmt = output_format(path)
    pixels, mode = fit_to_format(photo.pixels, photo.mode, fmt)
    options = {k: photo.metadata[k] for k in _SAVE_OPTIONS[fmt] if k in photo.metadata}
    if quality is not None or mode != photo.mode:  # a quality asked for, or other pixels than the tables were for
        options.pop("qtables", None)
        options.pop("subsampling", None)
    if quality is not None:  # asked for: a lossy file at that quality
        options.pop("lossless", None)
        options["quality"] = quality
    if _colour_space(mode) != _colour_space(photo.mode):
        options.pop("icc_profile", None)  # the profile describes the old colour space
    try:
        if mode == RGB16:
            atomic_write(path, lambda tmp: _write_tiff16(tmp, pixels, options))
        else:
            save_pil(path, array_to_pil(pixels, mode), **options)
    except OSError as exc:
        raise DerainError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def fit_to_format(pixels: np.ndarray, mode: str, fmt: str) -> tuple[np.ndarray, str]:
    """The pixels and mode to write in `fmt`: unchanged when it can hold them, else 8-bit
    gray/RGB with alpha where the format has it."""
    if mode in _WRITABLE_MODES[fmt]:
        return pixels, mode
    if pixels.dtype == np.uint16:
        pixels = np.round(pixels / 257.0).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    alpha = pixels[..., -1:] if channels in (2, 4) and fmt != "JPEG" else None
    colour = pixels if channels == 1 else pixels[..., : (1 if channels == 2 else 3)]
    colour = colour[..., None] if colour.ndim == 2 else colour
    gray = "L" if alpha is None else "LA"
    if colour.shape[2] == 1 and gray in _WRITABLE_MODES[fmt]:
        return (colour[..., 0] if alpha is None else np.concatenate([colour, alpha], 2)), gray
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    return (rgb, "RGB") if alpha is None else (np.concatenate([rgb, alpha], 2), "RGBA")


def _colour_space(mode: str) -> str:
    return "gray" if mode in _GRAY_MODES else "cmyk" if mode == "CMYK" else "rgb"


def _write_tiff16(tmp: str, pixels: np.ndarray, options: dict) -> None:
    import tifffile

    tags = dict(options.get("tiffinfo", {}))
    software = tags.pop(305, None)
    dpi = options.get("dpi")
    tifffile.imwrite(
        tmp, pixels, photometric="rgb", metadata=None, software=software,
        extrasamples=["unassalpha"] if pixels.shape[2] == 4 else None,
        compression="zlib" if options.get("compression", "raw") != "raw" else None,
        iccprofile=options.get("icc_profile"),
        resolution=tuple(dpi) if dpi else None, resolutionunit="INCH" if dpi else None,
        extratags=[(tag, "s", 0, value, True) for tag, value in tags.items()],
    )
