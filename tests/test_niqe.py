"""NIQE: its building blocks against closed forms, its behaviour on degradations, its parameter files."""
import time

import numpy as np
import pytest
import scipy.io
from scipy.ndimage import convolve, gaussian_filter
from scipy.stats import gennorm
from skimage import data

from derain.errors import DerainError
from derain.metrics import NIQEModel, bundled_model, fit_niqe_model, load_niqe_params, niqe, niqe_features
from derain.metrics.niqe import N_FEATURES, fit_aggd, imresize_half, mscn, to_gray


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def held_out_model() -> NIQEModel:
    """A pristine model fitted without the astronaut photo (it is in the bundled model's set)."""
    return fit_niqe_model(held_out_photos())


def held_out_photos() -> list[np.ndarray]:
    gray = [data.camera(), data.grass(), data.brick(), data.gravel()]
    return [data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]] + [_rgb(g) for g in gray]


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _noisy(image, sigma=10.0):
    rng = np.random.default_rng(0)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).round().astype(np.uint8)


def _blurred(image, sigma=2.0):
    return gaussian_filter(image.astype(np.float64), (sigma, sigma, 0)).round().astype(np.uint8)


def _rainy(image):
    """Bright, slightly slanted streaks: sparse seeds smeared along a 21-pixel line."""
    rng = np.random.default_rng(1)
    seeds = (rng.random(image.shape[:2]) < 0.004).astype(np.float64)
    line = np.zeros((21, 5))
    line[np.arange(21), np.arange(21) // 5] = 1  # 21 pixels long, slanted by one column per five rows
    streaks = np.clip(convolve(seeds, line), 0, 1)
    return np.clip(image + 120 * streaks[..., None], 0, 255).round().astype(np.uint8)


class TestBuildingBlocks:
    def test_aggd_recovers_a_generalised_gaussian(self):
        samples = gennorm.rvs(beta=1.5, scale=0.7, size=(2, 200_000), random_state=0)
        alpha, left, right = fit_aggd(samples)
        np.testing.assert_allclose(alpha, 1.5, rtol=0.03)
        np.testing.assert_allclose(left, 0.7, rtol=0.03)
        np.testing.assert_allclose(right, 0.7, rtol=0.03)

    def test_aggd_sees_asymmetry(self):
        rng = np.random.default_rng(0)
        samples = rng.normal(size=(1, 100_000))
        samples[samples < 0] *= 0.5  # left half narrower
        _, left, right = fit_aggd(samples)
        assert left[0] / right[0] == pytest.approx(0.5, rel=0.03)

    def test_aggd_without_negative_samples_is_nan(self):
        alpha, left, _ = fit_aggd(np.abs(np.random.default_rng(0).normal(size=(1, 100))))
        assert np.isnan(alpha[0]) and np.isnan(left[0])

    def test_mscn_is_exactly_zero_where_the_neighbourhood_is_flat(self):
        image = np.full((40, 40), 16.0)  # 16: filtering leaves a round-off residual here
        image[:, 20:] = np.random.default_rng(0).integers(0, 255, (40, 20))
        coefficients, sigma = mscn(image)
        assert np.all(coefficients[:, :17] == 0)  # the 7x7 window still sees only the flat half
        assert np.all(coefficients[:, 17:20] != 0)
        np.testing.assert_allclose(sigma[:, :17], 0, atol=1e-6)

    def test_half_size_bicubic_keeps_constants_and_interior_ramps(self):
        constant = np.full((20, 24), 9.0)
        np.testing.assert_allclose(imresize_half(constant), 4.5 * 2, rtol=1e-12)
        ramp = np.tile(np.arange(40, dtype=np.float64), (24, 1))  # value = column index
        half = imresize_half(ramp)
        assert half.shape == (12, 20)
        # output column j sits at input 2j + 0.5; away from the mirrored borders a cubic kernel is exact
        np.testing.assert_allclose(half[:, 2:-2], np.tile(2 * np.arange(2, 18) + 0.5, (12, 1)), atol=1e-9)

    def test_features_per_patch(self, photo):
        features, sharpness = niqe_features(to_gray(photo)[:200, :300])
        assert features.shape == (2 * 3, N_FEATURES)  # crop to 192x288: 2 x 3 patches
        assert sharpness.shape == (6,) and np.all(sharpness > 0)

    def test_gray_is_matlab_rgb2gray(self):
        colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], np.uint8)
        assert to_gray(colours).tolist() == [[76, 150, 29, 200]]

    def test_too_small_image_is_refused(self):
        with pytest.raises(ValueError, match="96x96"):
            niqe(np.zeros((95, 200, 3), np.uint8))


class TestScores:
    @pytest.mark.parametrize("degrade", [_noisy, _blurred, _rainy], ids=["noise", "blur", "rain"])
    def test_clean_scores_lower_than_degraded(self, photo, held_out_model, degrade):
        for model in (held_out_model, bundled_model()):
            assert model.score(photo) < model.score(degrade(photo))

    @pytest.mark.parametrize("name, reference", [
        ("coffee", 4.938492), ("chelsea", 4.575326), ("rocket", 9.732994), ("camera", 4.820186),
    ])
    def test_agrees_with_basicsr_reference_values(self, name, reference):
        # BasicSR 1.4.2's niqe() on the same MATLAB-rgb2gray image with the bundled parameters
        # (measured once outside this repository, see docs/metrics.md).
        image = getattr(data, name)()
        image = image if image.ndim == 3 else _rgb(image)
        assert niqe(image) == pytest.approx(reference, rel=1e-3)

    def test_gray_and_y_conversions_both_work(self, photo):
        assert niqe(photo, color="y") != niqe(photo, color="gray")

    def test_512_image_scores_well_under_a_second(self, photo):
        model = bundled_model()
        model.score(photo)
        best = min(_seconds(lambda: model.score(photo)) for _ in range(3))
        assert best < 0.5


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


class TestPristineModels:
    def test_fitted_covariance_is_positive_definite(self, held_out_model):
        for model in (held_out_model, bundled_model()):
            assert model.mean.shape == (N_FEATURES,)
            np.testing.assert_allclose(model.cov, model.cov.T)
            assert np.linalg.eigvalsh(model.cov).min() > 0

    def test_fit_keeps_each_images_sharp_patches_only(self, held_out_model):
        kept, total = [], 0
        for image in held_out_photos():
            features, sharpness = niqe_features(to_gray(image))
            kept.append(features[sharpness > 0.75 * sharpness.max()])
            total += len(features)
        kept = np.concatenate(kept)
        assert N_FEATURES < len(kept) < total
        np.testing.assert_allclose(held_out_model.mean, kept.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(held_out_model.cov, np.cov(kept, rowvar=False), rtol=1e-10)

    def test_too_few_patches_to_fit(self):
        with pytest.raises(ValueError, match="too few"):
            fit_niqe_model([data.chelsea()])

    def test_loads_matlab_modelparameters_mat(self, tmp_path, photo, held_out_model):
        path = tmp_path / "modelparameters.mat"
        scipy.io.savemat(path, {"mu_prisparam": held_out_model.mean[None, :], "cov_prisparam": held_out_model.cov})
        loaded = load_niqe_params(path)
        assert loaded.score(photo) == pytest.approx(held_out_model.score(photo), rel=1e-12)

    def test_loads_basicsr_npz(self, tmp_path, photo, held_out_model):
        path = tmp_path / "niqe_pris_params.npz"
        np.savez(path, mu_pris_param=held_out_model.mean[None, :], cov_pris_param=held_out_model.cov,
                 gaussian_window=np.ones((7, 7)) / 49)
        loaded = load_niqe_params(path)
        assert loaded.score(photo) == pytest.approx(held_out_model.score(photo), rel=1e-12)

    def test_save_then_load_round_trip(self, tmp_path, held_out_model):
        held_out_model.save(tmp_path / "model.npz")
        loaded = load_niqe_params(tmp_path / "model.npz")
        np.testing.assert_array_equal(loaded.cov, held_out_model.cov)

    def test_wrong_files_are_user_errors(self, tmp_path):
        np.savez(tmp_path / "other.npz", mu=np.zeros(36))
        with pytest.raises(DerainError, match="missing mu_pris_param, cov_pris_param"):
            load_niqe_params(tmp_path / "other.npz")
        with pytest.raises(DerainError, match="cannot read"):
            load_niqe_params(tmp_path / "absent.mat")
        np.savez(tmp_path / "short.npz", mu_pris_param=np.zeros(18), cov_pris_param=np.eye(18))
        with pytest.raises(DerainError, match="36-d"):
            load_niqe_params(tmp_path / "short.npz")
