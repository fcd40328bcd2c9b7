"""Find the rainy/clean pairs in a dataset folder, whichever standard layout it uses.

Each layout is a function that returns the pairs when a folder has that layout and None otherwise.
`list_pairs` tries them in the order of `LAYOUTS` and, when none fits, names every layout it tried.
Inside a layout, files pair up by a key (the relative path without extension, minus layout prefixes
or suffixes), so `rainy/x.jpg` pairs with `clean/x.png`. A file without a partner is an error.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from derain.errors import DerainError
from derain.imageio import is_image_file, read_image, read_image_uint8


@dataclass(frozen=True)
class Pair:
    """One training or test sample: a rainy image and its clean target.

    With `side_by_side`, `rainy` and `clean` are the same file: its left half is rainy, its right half clean.
    """

    name: str
    rainy: Path
    clean: Path
    side_by_side: bool = False


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `root`, sorted; hidden files and folders (such as `._x.jpg`) are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DerainError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [p for p in candidates
             if is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
             and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# Paired sibling folders, rainy side first; in JORDER's `rain/` `norain/` the names may also be prefixed.
FOLDER_PAIRS = (("input", "target"), ("rainy", "clean"), ("rain", "norain"), ("lq", "gt"))


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _strip_prefix(key: str, prefix: str) -> str | None:
    folder, _, stem = key.rpartition("/")
    if not stem.startswith(prefix):
        return None
    return f"{folder}/{stem[len(prefix):]}" if folder else stem[len(prefix):]


def _strip_suffix(key: str, suffix: str) -> str | None:
    return key[: -len(suffix)] if key.endswith(suffix) and len(key) > len(suffix) else None


def _index(files: Iterable[Path], key_of: Callable[[Path], str | None], what: Path) -> dict[str, Path]:
    """Map key -> file, refusing two files with one key (such as `a.png` and `a.jpg`)."""
    index: dict[str, Path] = {}
    for f in files:
        key = key_of(f)
        if key is None:
            continue
        if key in index:
            raise DerainError(f"{what}: {index[key].name} and {f.name} both claim the name {key!r}")
        index[key] = f
    return index


def _refuse_unclaimed(where: Path, files: list[Path], *indexes: dict[str, Path]) -> None:
    claimed = {f for index in indexes for f in index.values()}
    strays = [f for f in files if f not in claimed]
    if strays:
        raise DerainError(f"{where}: {len(strays)} image(s) do not follow the layout's names, e.g. {strays[0]}")


def _match(root: Path, rainy: dict[str, Path], clean: dict[str, Path],
           clean_key: Callable[[str], str] = lambda k: k) -> list[Pair]:
    """Pair each rainy key with `clean[clean_key(key)]`; every file on both sides must be used."""
    orphans = sorted(str(path) for key, path in rainy.items() if clean_key(key) not in clean)
    used = {clean_key(key) for key in rainy}
    orphans += sorted(str(path) for key, path in clean.items() if key not in used)
    if orphans:
        raise DerainError(f"{root}: {len(orphans)} file(s) without a partner, e.g. {orphans[0]}")
    return [Pair(key, path, clean[clean_key(key)]) for key, path in sorted(rainy.items())]


def _paired_folders(root: Path) -> tuple[str, list[Pair]] | None:
    for rainy_name, clean_name in FOLDER_PAIRS:
        rainy_dir, clean_dir = root / rainy_name, root / clean_name
        if not (rainy_dir.is_dir() and clean_dir.is_dir()):
            continue
        rainy_files, clean_files = list_images(rainy_dir), list_images(clean_dir)
        rainy_keys = [_key(p, rainy_dir) for p in rainy_files]
        if rainy_name == "rain" and rainy_keys and all(_strip_prefix(k, "rain-") for k in rainy_keys):
            rainy = _index(rainy_files, lambda p: _strip_prefix(_key(p, rainy_dir), "rain-"), rainy_dir)
            clean = _index(clean_files, lambda p: _strip_prefix(_key(p, clean_dir), "norain-"), clean_dir)
            _refuse_unclaimed(clean_dir, clean_files, clean)
            return "jorder", _match(root, rainy, clean)
        rainy = _index(rainy_files, lambda p: _key(p, rainy_dir), rainy_dir)
        clean = _index(clean_files, lambda p: _key(p, clean_dir), clean_dir)
        return "paired", _match(root, rainy, clean)
    return None


def _jorder_one_folder(root: Path) -> tuple[str, list[Pair]] | None:
    files = list_images(root, recursive=False)
    rainy = _index(files, lambda p: _strip_prefix(p.stem, "rain-"), root)
    clean = _index(files, lambda p: _strip_prefix(p.stem, "norain-"), root)
    if not (rainy and clean):
        return None
    _refuse_unclaimed(root, files, rainy, clean)
    return "jorder", _match(root, rainy, clean)


def _ddn(root: Path) -> tuple[str, list[Pair]] | None:
    rainy_dir, clean_dir = root / "rainy_image", root / "ground_truth"
    if not (rainy_dir.is_dir() and clean_dir.is_dir()):
        return None
    rainy = _index(list_images(rainy_dir), lambda p: _key(p, rainy_dir), rainy_dir)
    clean = _index(list_images(clean_dir), lambda p: _key(p, clean_dir), clean_dir)
    bad = sorted(k for k in rainy if "_" not in k.rpartition("/")[2])
    if bad:
        raise DerainError(f"{rainy_dir}: DDN rainy names look like <id>_<k>, got {bad[0]!r}")
    return "ddn", _match(root, rainy, clean, clean_key=lambda k: k.rpartition("_")[0])


def _spa(root: Path) -> tuple[str, list[Pair]] | None:
    files = list_images(root)
    rainy = _index(files, lambda p: _spa_key(p, root, "_rain", "rain"), root)
    clean = _index(files, lambda p: _spa_key(p, root, "_gt", "gt"), root)
    if not (rainy and clean):
        return None
    _refuse_unclaimed(root, files, rainy, clean)
    return "spa", _match(root, rainy, clean)


def _spa_key(path: Path, root: Path, suffix: str, folder: str) -> str | None:
    """`a/rain/x_rain.png` and `a/gt/x_gt.png` share the key `a/x`; the side folder is optional."""
    stem = _strip_suffix(path.stem, suffix)
    if stem is None:
        return None
    parent = path.parent.relative_to(root).parts
    if parent and parent[-1] == folder:
        parent = parent[:-1]
    return "/".join((*parent, stem))


SIDE_BY_SIDE_PROBE = 16  # images whose size is checked to recognise DID-MDN


def _did_mdn(root: Path) -> tuple[str, list[Pair]] | None:
    files = list_images(root)
    if not files:
        return None
    for f in files[:SIDE_BY_SIDE_PROBE]:
        try:
            with Image.open(f) as img:
                width, height = img.size
        except OSError:
            return None
        if width != 2 * height:
            return None
    return "did-mdn", [Pair(_key(f, root), f, f, side_by_side=True) for f in files]


# Order matters: specific folder names first, then name patterns, then the image shape.
LAYOUTS: tuple[tuple[str, str, Callable[[Path], tuple[str, list[Pair]] | None]], ...] = (
    ("ddn", "DDN rainy_image/<id>_<k> + ground_truth/<id>", _ddn),
    ("paired", "paired folders " + ", ".join(f"{a}/{b}" for a, b in FOLDER_PAIRS), _paired_folders),
    ("spa", "SPA *_rain + *_gt", _spa),
    ("jorder", "JORDER rain-* + norain-* in one folder", _jorder_one_folder),
    ("did-mdn", "DID-MDN side-by-side (width = 2 x height, rainy left)", _did_mdn),
)


def _detect(root: str | Path) -> tuple[str, list[Pair]]:
    root = Path(root)
    if not root.is_dir():
        raise DerainError(f"{root}: {'not a folder' if root.exists() else 'folder not found'}")
    for _, _, match in LAYOUTS:
        found = match(root)
        if found is not None:
            return found
    tried = "; ".join(description for _, description, _ in LAYOUTS)
    raise DerainError(f"{root}: no paired dataset layout fits (tried: {tried})")


def detect_layout(root: str | Path) -> str:
    """The name of the layout of `root`: one of paired, jorder, ddn, spa, did-mdn."""
    return _detect(root)[0]


def list_pairs(root: str | Path) -> list[Pair]:
    """All pairs under `root`, sorted by name; raises DerainError naming the layouts tried if none fits."""
    pairs = _detect(root)[1]
    if not pairs:
        raise DerainError(f"{root}: the dataset folders hold no images")
    return pairs


def load_pair_uint8(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) as H×W×3 uint8, for metrics."""
    if pair.side_by_side:
        return _split(pair, read_image_uint8(pair.rainy))
    return _same_size(pair, read_image_uint8(pair.rainy), read_image_uint8(pair.clean))


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) as H×W×3 float32 in [0, 1]."""
    if pair.side_by_side:
        return _split(pair, read_image(pair.rainy))
    return _same_size(pair, read_image(pair.rainy), read_image(pair.clean))


def _split(pair: Pair, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = both.shape[:2]
    if width != 2 * height:
        raise DerainError(f"{pair.rainy}: a side-by-side image must be twice as wide as tall, got {width}x{height}")
    return both[:, :height], both[:, height:]


def _same_size(pair: Pair, rainy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if rainy.shape != clean.shape:
        raise DerainError(f"{pair.rainy}: size {rainy.shape[1]}x{rainy.shape[0]} differs from "
                          f"its clean image {pair.clean} ({clean.shape[1]}x{clean.shape[0]})")
    return rainy, clean
