import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader

from derain.data import (CLEAR_LABEL, RAINY_LABEL, BlurDataset, PairedDataset, RandomBlur, UnpairedDataset,
                         gaussian_blur, gaussian_kernel_size, gradients)
from derain.data.augment import pad_to, random_dihedral, random_flip
from derain.errors import DerainError


@pytest.fixture
def complementary_pairs(tmp_path, make_image, make_scene):
    """A paired folder where rainy = 255 - clean, so any misaligned crop or flip shows."""
    for i, size in enumerate([(40, 52), (48, 40), (20, 24)]):
        clean = np.round(make_scene(size, seed=i) * 255).astype(np.uint8)
        make_image(tmp_path / "clean" / f"{i}.png", array=clean)
        make_image(tmp_path / "rainy" / f"{i}.png", array=255 - clean)
    return tmp_path


def test_paired_crops_are_aligned_and_sized(complementary_pairs):
    data = PairedDataset(complementary_pairs, crop=32, seed=3)
    assert len(data) == 3
    for i in range(len(data)):
        rainy, clean = data[i]
        assert rainy.shape == clean.shape == (3, 32, 32) and rainy.dtype == torch.float32
        assert torch.allclose(rainy + clean, torch.ones_like(rainy), atol=1e-6)


def test_full_images_when_crop_is_none(complementary_pairs):
    data = PairedDataset(complementary_pairs, crop=None, augment=False)
    assert [tuple(data[i][0].shape) for i in range(3)] == [(3, 40, 52), (3, 48, 40), (3, 20, 24)]


def test_small_image_is_reflect_padded():
    img = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1)
    padded = pad_to(img, 5)
    assert padded.shape == (5, 5, 1)
    inner = padded[1:3, 1:4, 0]  # centred: 1 row/column before, 2 after
    assert np.array_equal(inner, img[..., 0])
    assert np.array_equal(padded[0, 1:4, 0], img[1, :, 0])  # mirrored about the first row
    assert np.array_equal(padded[1:3, 0, 0], img[:, 1, 0])


def test_dihedral_reaches_all_eight_and_keeps_pairs_together():
    img = np.arange(4).reshape(2, 2, 1)
    seen = set()
    for i in range(64):
        a, b = random_dihedral([img, img + 10], np.random.default_rng(i))
        assert np.array_equal(a + 10, b)
        seen.add(tuple(a.ravel()))
    assert len(seen) == 8


def test_flip_reaches_the_four_that_keep_a_vertical_line_vertical():
    img = np.zeros((5, 5, 1))
    img[:, 1] = 1.0  # a vertical line
    img[0, 0] = 2.0  # marks the corner, so all four flips differ
    seen = set()
    for i in range(64):
        a, b = random_flip([img, img + 10], np.random.default_rng(i))
        assert np.array_equal(a + 10, b)
        assert np.isin(np.flatnonzero(a[2, :, 0] == 1.0), [1, 3]).all() and (a[2, :, 0] == 1.0).sum() == 1
        seen.add(tuple(a.ravel()))
    assert len(seen) == 4


def test_rainy_datasets_never_turn_rain_horizontal(tmp_path):
    from derain.data.datasets import RainMixDataset

    assert PairedDataset.holds_rain and UnpairedDataset.holds_rain and not RainMixDataset.holds_rain
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, 5] = 255  # a vertical streak
    for name in ("rainy", "clean"):
        (tmp_path / name).mkdir()
        Image.fromarray(img).save(tmp_path / name / "a.png")
    dataset = PairedDataset(tmp_path, crop=16, samples_per_epoch=32)
    for i in range(32):
        rainy, _ = dataset[i]
        bright = rainy[0] > rainy[0].max() / 2
        assert bright.all(0).sum() == 1 and not bright.all(1).any()  # one full column, no full row


def _samples(dataset, **loader):
    return [torch.cat([t.flatten() for t in batch]) for batch in DataLoader(dataset, batch_size=1, **loader)]


def test_deterministic_across_instances_epochs_and_workers(complementary_pairs):
    def data(seed=0):
        return PairedDataset(complementary_pairs, crop=16, seed=seed, samples_per_epoch=6)

    first = _samples(data())
    assert all(torch.equal(a, b) for a, b in zip(first, _samples(data())))
    assert all(torch.equal(a, b) for a, b in zip(first, _samples(data(), num_workers=2)))
    assert not all(torch.equal(a, b) for a, b in zip(first, _samples(data(seed=1))))
    later = data()
    later.set_epoch(1)
    assert later.epoch == 1
    assert not all(torch.equal(a, b) for a, b in zip(first, _samples(later)))


def test_set_epoch_reaches_persistent_workers(complementary_pairs):
    expected = PairedDataset(complementary_pairs, crop=16, seed=0)
    expected.set_epoch(1)
    expected = _samples(expected)
    data = PairedDataset(complementary_pairs, crop=16, seed=0)
    loader = DataLoader(data, batch_size=1, num_workers=1, persistent_workers=True)
    list(loader)  # epoch 0 starts the worker
    data.set_epoch(1)
    got = [torch.cat([t.flatten() for t in batch]) for batch in loader]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


@pytest.fixture
def recog_folders(tmp_path, make_image):
    """One dark 'rainy' image and four bright 'clear' images (one nested), so content tells the class."""
    make_image(tmp_path / "rain" / "r.jpg", array=np.full((20, 20, 3), 10, np.uint8))
    for name in ("a.png", "b.png", "c.png", "deep/d.png"):
        make_image(tmp_path / "clear" / name, array=np.full((20, 20, 3), 240, np.uint8))
    return tmp_path / "rain", tmp_path / "clear"


def test_unpaired_labels_follow_rainy0_clear1(recog_folders):
    rain, clear = recog_folders
    data = UnpairedDataset([(rain, RAINY_LABEL), (clear, CLEAR_LABEL)], crop=16, seed=0)
    assert (RAINY_LABEL, CLEAR_LABEL) == (0.0, 1.0)
    assert len(data) == 5
    for i in range(len(data)):
        img, label = data[i]
        assert img.shape == (3, 16, 16) and label.dtype == torch.float32 and label.dim() == 0
        assert float(label) == (1.0 if img.mean() > 0.5 else 0.0)


def test_unpaired_balanced_draws_classes_equally(recog_folders):
    rain, clear = recog_folders
    data = UnpairedDataset([(rain, 0.0), (clear, 1.0)], crop=8, seed=0, balanced=True)
    assert len(data) == 8  # 2 classes x the larger class (4)
    labels = [float(data[i][1]) for i in range(len(data))]
    assert labels.count(0.0) == labels.count(1.0) == 4


def test_blur_dataset_blurs_within_sigma_range(tmp_path, make_image):
    make_image(tmp_path / "c" / "x.png", size=48, array=np.random.default_rng(0).integers(0, 256, (48, 48, 3),
                                                                                          dtype=np.uint8))
    data = BlurDataset(tmp_path / "c", crop=32, sigma_range=(1.0, 2.0), seed=0, samples_per_epoch=4)
    for i in range(4):
        blurred, clean = data[i]
        assert blurred.shape == clean.shape == (3, 32, 32)
        # blur lowers the gradient energy and keeps the mean
        assert sum(g.pow(2).mean() for g in gradients(blurred)) < 0.5 * sum(g.pow(2).mean() for g in gradients(clean))
        assert abs(float(blurred.mean() - clean.mean())) < 0.01
    assert torch.equal(data[2][0], BlurDataset(tmp_path / "c", crop=32, sigma_range=(1.0, 2.0), seed=0)[2][0])


def test_bad_file_raises_naming_it(tmp_path, make_image):
    make_image(tmp_path / "clear" / "good.png")
    (tmp_path / "clear" / "broken.png").write_bytes(b"")
    data = UnpairedDataset([(tmp_path / "clear", 1.0)], crop=8)
    with pytest.raises(DerainError, match="broken.png"):
        [data[i] for i in range(len(data))]


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DerainError, match="no images"):
        BlurDataset(tmp_path / "empty")


def test_gradients_are_forward_differences():
    x = torch.tensor([[1.0, 2.0, 4.0], [1.0, 5.0, 9.0]]).view(1, 1, 2, 3)
    dx, dy = gradients(x)
    assert dx.shape == (1, 1, 2, 2) and dy.shape == (1, 1, 1, 3)
    assert dx.flatten().tolist() == [1.0, 2.0, 4.0, 4.0]
    assert dy.flatten().tolist() == [0.0, 3.0, 5.0]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.0])
def test_gaussian_blur_matches_scipy_mirror(sigma):
    assert gaussian_kernel_size(sigma) == 2 * math.ceil(3 * sigma) + 1
    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    radius = gaussian_kernel_size(sigma) // 2
    expected = gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode="mirror", truncate=radius / sigma)
    assert np.allclose(gaussian_blur(x, sigma).numpy(), expected, atol=1e-10)
    assert gaussian_blur(x[0], sigma).shape == (3, 24, 20)


def test_random_blur_sigma_stays_in_range_and_is_seeded():
    blur = RandomBlur((0.5, 3.0))
    x = torch.rand(3, 16, 16)
    sigmas = [blur(x, np.random.default_rng(i))[1] for i in range(50)]
    assert 0.5 <= min(sigmas) and max(sigmas) <= 3.0 and max(sigmas) - min(sigmas) > 1.5
    assert blur(x, np.random.default_rng(7))[1] == blur(x, np.random.default_rng(7))[1]
    with pytest.raises(DerainError):
        RandomBlur((2.0, 1.0))


def test_synthetic_rainy_share_replaces_rainy_samples_only(recog_folders):
    from derain.data import RainMixDataset, SyntheticRainyDataset
    rain, clear = recog_folders
    real = UnpairedDataset([(rain, RAINY_LABEL), (clear, CLEAR_LABEL)], crop=8, seed=0, balanced=True,
                           samples_per_epoch=400)
    clear_files = sorted(clear.rglob("*.png"))
    synthetic = RainMixDataset(clear_files, crop=8, seed=0, weights={"heavy": 1.0})
    mixed = SyntheticRainyDataset(real, synthetic, share=0.5)
    chosen = [i for i in range(len(mixed)) if mixed.is_synthetic(i)]
    assert all(i % 2 == 0 for i in chosen)  # only the rainy class (label 0 sorts first)
    assert 80 < len(chosen) < 120  # about half of the 200 rainy samples
    for i in chosen[:5]:
        img, label = mixed[i]
        assert float(label) == RAINY_LABEL and torch.equal(img, synthetic[i][0])
        assert img.mean() > 0.5  # a bright clear scene with rain, not the dark real rainy image
    for i in (1, 3):
        assert torch.equal(mixed[i][0], real[i][0]) and float(mixed[i][1]) == CLEAR_LABEL
    assert not any(SyntheticRainyDataset(real, synthetic, 0.0).is_synthetic(i) for i in range(len(real)))
    with pytest.raises(DerainError, match="no 'none'"):
        SyntheticRainyDataset(real, RainMixDataset(clear_files, crop=8, weights={"none": 1.0}), 0.5)
