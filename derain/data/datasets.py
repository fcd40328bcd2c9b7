"""Torch datasets for the three training tasks: deraining pairs, T_recog and T_recon.

Every random choice of sample `i` comes from a generator seeded with (seed, epoch, i), so a sample
is the same whatever the number of DataLoader workers or the order they run in. `set_epoch(e)`
changes the draws for the next epoch; the epoch lives in shared memory, so persistent workers see it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from derain.data.augment import random_crop, random_dihedral, random_flip
from derain.data.degradations import RandomBlur
from derain.data.families import (TRAIN_WEIGHTS, add_family_rain, aligned_line_energy, bank_for, check_overrides,
                                  check_weights, detail_energy, draw_family)
from derain.data.harm import harm_for
from derain.data.layouts import Pair, list_images, list_pairs, load_pair
from derain.errors import DerainError
from derain.imageio import IMAGE_EXTENSIONS, read_image

RAINY_LABEL = 0.0  # T_recog targets: the paper's "0/1 standing for rainy/rain-free"
CLEAR_LABEL = 1.0


def images_in(root: str | Path) -> list[Path]:
    """`list_images(root)` (or [root] for an image file), refusing a folder without images."""
    if Path(root).is_file():
        return [Path(root)]
    files = list_images(root)
    if not files:
        raise DerainError(f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×3 array to a contiguous 3×H×W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


class SeededDataset(Dataset):
    """Base: per-sample generators from (seed, epoch, index), cropping and flips/rotations (only the
    flips that keep rain's direction where an image holds rain: `holds_rain`)."""

    holds_rain = False

    def __init__(self, crop: int | None, augment: bool, seed: int):
        if crop is not None and crop < 1:
            raise DerainError(f"crop must be a positive size or None, got {crop}")
        self.crop, self.augment, self.seed = crop, augment, int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def prepare(self, images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Crop (unless crop is None) and augment several aligned images the same way."""
        if self.crop is not None:
            images = random_crop(images, self.crop, rng)
        if self.augment:
            images = (random_flip if self.holds_rain else random_dihedral)(images, rng)
        return list(images)


class PairedDataset(SeededDataset):
    """(rainy, clean) 3×crop×crop tensors from a dataset folder in any layout `list_pairs` knows,
    several such folders, or a list of Pairs.

    `samples_per_epoch` (default: one per pair) cycles over the pairs, for small fine-tuning sets.
    """

    holds_rain = True

    def __init__(self, root_or_pairs: str | Path | Sequence[str | Path | Pair], crop: int | None = 256,
                 augment: bool = True, seed: int = 0, samples_per_epoch: int | None = None):
        super().__init__(crop, augment, seed)
        items = [root_or_pairs] if isinstance(root_or_pairs, (str, Path)) else list(root_or_pairs)
        self.pairs = [pair for item in items
                      for pair in (list_pairs(item) if isinstance(item, (str, Path)) else [item])]
        if not self.pairs:
            raise DerainError("PairedDataset: no pairs given")
        self.length = samples_per_epoch or len(self.pairs)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rainy, clean = load_pair(self.pairs[index % len(self.pairs)])
        rainy, clean = self.prepare([rainy, clean], self.rng(index))
        return to_tensor(rainy), to_tensor(clean)


class UnpairedDataset(SeededDataset):
    """(image, label) for T_recog from folders of real images, e.g. [(rainy_dir, 0.0), (clear_dir, 1.0)].

    Folders are searched recursively; several folders may share a label. With `balanced`, sample i
    comes from class i mod n_classes (a random image of it), so every class is drawn equally often.
    """

    holds_rain = True

    def __init__(self, roots_with_labels: Sequence[tuple[str | Path, float]], crop: int | None = 256,
                 seed: int = 0, augment: bool = True, balanced: bool = False,
                 samples_per_epoch: int | None = None):
        super().__init__(crop, augment, seed)
        self.items: list[tuple[Path, float]] = []
        for root, label in roots_with_labels:
            self.items += [(f, float(label)) for f in images_in(root)]
        if not self.items:
            raise DerainError("UnpairedDataset: no folders given")
        self.labels = labels = sorted({label for _, label in self.items})
        self.by_label = [[item for item in self.items if item[1] == label] for label in labels]
        self.balanced = balanced
        default = len(labels) * max(map(len, self.by_label)) if balanced else len(self.items)
        self.length = samples_per_epoch or default

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        if self.balanced:
            group = self.by_label[index % len(self.by_label)]
            path, label = group[int(rng.integers(len(group)))]
        else:
            path, label = self.items[index % len(self.items)]
        (img,) = self.prepare([read_image(path)], rng)
        return to_tensor(img), torch.tensor(label, dtype=torch.float32)


class BlurDataset(SeededDataset):
    """(blurred, clean) for T_recon: clean crops of real clear photos, blurred with σ from `sigma_range`."""

    def __init__(self, clean_roots: str | Path | Sequence[str | Path], crop: int | None = 256,
                 sigma_range: tuple[float, float] = (0.5, 3.0), seed: int = 0, augment: bool = True,
                 samples_per_epoch: int | None = None):
        super().__init__(crop, augment, seed)
        roots = [clean_roots] if isinstance(clean_roots, (str, Path)) else list(clean_roots)
        self.files = [f for root in roots for f in images_in(root)]
        self.blur = RandomBlur(sigma_range)
        self.length = samples_per_epoch or len(self.files)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        (clean,) = self.prepare([read_image(self.files[index % len(self.files)])], rng)
        clean = to_tensor(clean)
        blurred, _ = self.blur(clean, rng)
        return blurred, clean


def harm_energy(crop: np.ndarray) -> float:
    """Mean of a crop's fourth channel: a model's change there (derain.data.harm)."""
    return float(crop[..., 3].mean())


def scene_pick(keys: str, crops: str, detailed: int, aligned: int, harmed: int = 1,
               ) -> tuple[int, Callable[[np.ndarray], float]]:
    """How many random crops to draw and the score that picks one: bright thin lines along the rain when
    `aligned` > 1 (families.aligned_line_energy), a model's change when `harmed` > 1 (harm_energy), else
    detail (families.detail_energy). Scores see the crop's colour only, except harm_energy."""
    if sum(n > 1 for n in (detailed, aligned, harmed)) > 1:
        raise DerainError(f"{keys} each pick the {crops} crops' scenes: set one of them")
    if harmed > 1:
        return harmed, harm_energy
    score = aligned_line_energy if aligned > 1 else detail_energy
    return max(detailed, aligned), lambda crop: score(crop[..., :3])


class RainMixDataset(SeededDataset):
    """(rainy, clean) made on the fly: a random crop of a random clean photo, flipped or rotated, with rain
    of a family drawn by `weights` (derain.data.families), so no two samples share their rain; `overrides`
    replace a family's parameter ranges (families.check_overrides).
    A no-rain sample is the most detailed of `negatives` random crops (derain.data.families.detail_energy):
    scene lines the model must learn to keep, or the one of `aligned_negatives` with the most bright thin lines
    along the rain's directions (families.aligned_line_energy): the scene it would most likely take for rain.
    A rainy one is the most detailed of `detailed_rain`: rain over such lines, which the model must tell apart
    from them, or the one of `aligned_rain` with the most lines along the rain: those that look most like streaks.
    With `harm_maps` (derain.data.harm: a model's change on each photo, where a no-rain photo should have none),
    a no-rain crop is instead the one of `harmed_negatives` on which that model changes most: its own mistakes.
    The `real` family's streaks come from the photos of `bank` (derain.data.rain_bank). A `zoom_share` of the
    crops are a smaller window enlarged up to `zoom` times (bicubic) before the rain: soft, enlarged scenes that
    are not rain. Decoded photos are cached per process."""

    def __init__(self, files: Sequence[str | Path], crop: int = 128, seed: int = 0,
                 weights: dict[str, float] | None = None, samples_per_epoch: int = 4096, negatives: int = 1,
                 detailed_rain: int = 1, overrides: dict[str, dict] | None = None, bank: Sequence[str | Path] = (),
                 aligned_rain: int = 1, aligned_negatives: int = 1, zoom: float = 1.0, zoom_share: float = 0.0,
                 harm_maps: dict[str, np.ndarray] | None = None, harmed_negatives: int = 1):
        super().__init__(crop, True, seed)
        if zoom < 1 or not 0 <= zoom_share <= 1:
            raise DerainError(f"zoom must be at least 1 and zoom_share within [0, 1], got {zoom} and {zoom_share}")
        self.zoom, self.zoom_share = zoom, zoom_share
        if min(negatives, detailed_rain, aligned_rain, aligned_negatives, harmed_negatives) < 1:
            raise DerainError(f"negatives, detailed_rain, aligned_rain, aligned_negatives and harmed_negatives must be "
                              f"at least 1, got {negatives}, {detailed_rain}, {aligned_rain}, {aligned_negatives} and "
                              f"{harmed_negatives}")
        if harmed_negatives > 1 and harm_maps is None:
            raise DerainError("harmed_negatives needs harm_maps (scripts/harm_maps.py)")
        self.negative_picks, self.negative_key = scene_pick("negatives, aligned_negatives and harmed_negatives",
                                                            "no-rain", negatives, aligned_negatives, harmed_negatives)
        self.rain_picks, self.rain_key = scene_pick("detailed_rain and aligned_rain", "rainy", detailed_rain,
                                                    aligned_rain)
        self.files = [Path(f) for f in files]
        if not self.files:
            raise DerainError("RainMixDataset: no clean photos given")
        self.harm = harm_for(self.files, harm_maps) if harmed_negatives > 1 else None  # only the pick reads them
        self.weights = check_weights(weights or TRAIN_WEIGHTS)
        self.overrides = check_overrides(overrides or {})
        self.bank = bank_for(self.weights, bank, self.overrides)
        self.length = samples_per_epoch
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def photo(self, k: int) -> np.ndarray:
        """Photo k, with the model's change on it as a fourth channel when there are harm maps."""
        if k not in self._cache:
            img = read_image(self.files[k])
            if self.harm is not None:
                if self.harm[k].shape != img.shape[:2]:
                    raise DerainError(f"{self.files[k]}: its harm map is {self.harm[k].shape}, the photo "
                                      f"{img.shape[:2]}")
                img = np.concatenate([img, self.harm[k][..., None].astype(img.dtype) / 255], axis=2)
            self._cache[k] = img
        return self._cache[k]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        clean = self.scene_crop(rng)
        family = draw_family(rng, self.weights)
        picks, key = (self.negative_picks, self.negative_key) if family == "none" else (self.rain_picks, self.rain_key)
        if picks > 1:
            others = [self.scene_crop(rng) for _ in range(picks - 1)]
            clean = max([clean, *others], key=key)
        clean = clean[..., :3]
        rainy, _ = add_family_rain(np.ascontiguousarray(clean, dtype=np.float64), family, rng, self.overrides, self.bank)
        return to_tensor(rainy), to_tensor(clean)

    def random_photo(self, rng: np.random.Generator) -> np.ndarray:
        return self.photo(int(rng.integers(len(self.files))))

    def scene_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A crop of a random photo, flipped or turned; with `zoom_share`, sometimes an enlarged smaller window."""
        photo = self.random_photo(rng)
        if self.zoom_share and rng.random() < self.zoom_share:  # no draw without zoom: old streams stay the same
            (window,) = random_crop([photo], max(8, round(self.crop / rng.uniform(1.0, self.zoom))), rng)
            big = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None],
                                                  size=(self.crop, self.crop), mode="bicubic", align_corners=False)
            photo = big[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy()
        return self.prepare([photo], rng)[0]


class SyntheticRainyDataset(Dataset):
    """T_recog's samples with a `share` of the rainy ones synthetic: a clear training photo with rain of a
    random family (a RainMixDataset without `none`). The clear class holds the same scenes, so only the
    rain tells the two apart, not the scene type of the real rainy photos."""

    def __init__(self, real: UnpairedDataset, synthetic: RainMixDataset, share: float):
        if not 0 <= share <= 1:
            raise DerainError(f"synthetic_rain must be in [0, 1], got {share}")
        if not real.balanced or RAINY_LABEL not in real.labels:
            raise DerainError("SyntheticRainyDataset: needs a balanced UnpairedDataset with a rainy class")
        if synthetic.weights.get("none", 0) > 0:
            raise DerainError("SyntheticRainyDataset: the synthetic rainy samples must all have rain (no 'none')")
        self.real, self.synthetic, self.share = real, synthetic, share
        self.rainy_slot = real.labels.index(RAINY_LABEL)

    def __len__(self) -> int:
        return len(self.real)

    def set_epoch(self, epoch: int) -> None:
        self.real.set_epoch(epoch)
        self.synthetic.set_epoch(epoch)

    def is_synthetic(self, index: int) -> bool:
        if index % len(self.real.labels) != self.rainy_slot:
            return False
        return np.random.default_rng([self.synthetic.seed, self.synthetic.epoch, int(index), 1]).random() < self.share

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_synthetic(index):
            return self.synthetic[index][0], torch.tensor(RAINY_LABEL, dtype=torch.float32)
        return self.real[index]
