"""PSNR, SSIM and the MATLAB Y conversion against closed forms and scikit-image as an oracle."""
import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derain.metrics import psnr, rgb_to_y, ssim
from derain.metrics.psnr_ssim import ssim_map


def photo_like(seed: int, shape=(64, 80, 3)) -> np.ndarray:
    """A smooth random image with texture, uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (shape[0] // 8, shape[1] // 8, shape[2]))
    smooth = np.kron(coarse, np.ones((8, 8, 1)))
    return np.clip(smooth + rng.normal(0, 12, shape), 0, 255).round().astype(np.uint8)


def degrade(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).round().astype(np.uint8)


def skimage_ssim(a: np.ndarray, b: np.ndarray, **kwargs):
    """scikit-image's SSIM set up as Wang et al. 2004 (an 11x11 Gaussian window, sigma 1.5)."""
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255, **kwargs)


class TestRgbToY:
    def test_closed_form_colours(self):
        colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
        # 16, 16 + 219, 16 + 65.481, 16 + 128.553, 16 + 24.966, rounded
        assert rgb_to_y(colours).tolist() == [[16, 235, 81, 145, 41]]

    def test_matches_skimage_rgb2ycbcr_rounded(self):
        image = photo_like(0)
        oracle = rgb2ycbcr(image)[..., 0]  # same limited-range formula, in float
        assert rgb_to_y(image).dtype == np.uint8
        np.testing.assert_array_equal(rgb_to_y(image), np.floor(oracle + 0.5).astype(np.uint8))

    def test_rejects_float_input(self):
        with pytest.raises(TypeError, match="uint8"):
            rgb_to_y(photo_like(0).astype(np.float32))


class TestPsnr:
    def test_constant_offset_gray(self):
        target = np.full((20, 20), 100, np.uint8)
        assert psnr(target + np.uint8(5), target) == pytest.approx(20 * np.log10(255 / 5))

    def test_one_channel_off_in_rgb(self):
        target = np.full((8, 8, 3), 50, np.uint8)
        pred = target.copy()
        pred[..., 1] += 6  # MSE over all channels = 36 / 3
        assert psnr(pred, target, "rgb") == pytest.approx(10 * np.log10(255**2 / 12))

    def test_y_protocol_on_gray_levels(self):
        # For R = G = B = v, Y = 16 + 219 v / 255: levels 0 and 255 give Y 16 and 235.
        dark, bright = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
        assert psnr(dark, bright, "y") == pytest.approx(20 * np.log10(255 / 219))

    def test_identical_is_infinite(self):
        image = photo_like(1)
        assert psnr(image, image) == float("inf")

    def test_rgb_matches_skimage(self):
        a, b = photo_like(2), degrade(photo_like(2), 3)
        assert psnr(a, b, "rgb") == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-10)

    def test_y_matches_skimage_on_y(self):
        a, b = photo_like(4), degrade(photo_like(4), 5)
        expected = peak_signal_noise_ratio(rgb_to_y(b), rgb_to_y(a), data_range=255)
        assert psnr(a, b, "y") == pytest.approx(expected, abs=1e-10)

    def test_refuses_mismatched_inputs(self):
        with pytest.raises(ValueError, match="shapes differ"):
            psnr(photo_like(0), photo_like(0, (64, 72, 3)))
        with pytest.raises(ValueError, match="protocol"):
            psnr(photo_like(0), photo_like(0), "ycbcr")


class TestSsim:
    def test_valid_map_equals_skimage_inner_region(self):
        # scikit-image filters the whole image (reflect padding) and averages after cropping
        # (11 - 1) / 2 = 5 pixels per side: exactly the region MATLAB's 'valid' filtering keeps.
        a, b = photo_like(6)[..., 0].astype(np.float64), degrade(photo_like(6), 7)[..., 0].astype(np.float64)
        mean, full = skimage_ssim(a, b, full=True)
        ours = ssim_map(a, b)
        assert ours.shape == (a.shape[0] - 10, a.shape[1] - 10)
        np.testing.assert_allclose(ours, full[5:-5, 5:-5], atol=1e-12)
        assert ours.mean() == pytest.approx(mean, abs=1e-12)

    def test_y_protocol_matches_skimage_on_y(self):
        a, b = photo_like(8), degrade(photo_like(8), 9)
        assert ssim(a, b, "y") == pytest.approx(skimage_ssim(rgb_to_y(a), rgb_to_y(b)), abs=1e-12)

    def test_rgb_protocol_matches_skimage_channel_mean(self):
        a, b = photo_like(10), degrade(photo_like(10), 11)
        assert ssim(a, b, "rgb") == pytest.approx(skimage_ssim(a, b, channel_axis=2), abs=1e-12)

    def test_identical_is_one_and_degraded_is_less(self):
        a = photo_like(12)
        assert ssim(a, a) == pytest.approx(1.0)
        assert ssim(degrade(a, 13), a) < 0.9

    def test_refuses_images_smaller_than_the_window(self):
        with pytest.raises(ValueError, match="11x11"):
            ssim(photo_like(0, (8, 40, 3)), photo_like(1, (8, 40, 3)))


def test_streak_energy_finds_the_rain_angle_and_ignores_darkening(make_scene):
    """Known truth: Photoshop-style streaks at 20° on a textured scene. Giving back the clean scene
    removes most of the oriented excess; the input itself removes none; darkening changes no ratio."""
    from derain.data.synthesis import synthesize
    from derain.metrics.streaks import streak_report

    clean = make_scene(192, 3).astype(np.float64)
    rainy, _ = synthesize(clean, "photoshop", np.random.default_rng(0), layers=1, angle=20.0, angle_jitter=0.0,
                          density=0.05, length=25.0)
    rainy, clean = (np.round(x * 255).astype(np.uint8) for x in (rainy, clean))
    perfect = streak_report(rainy, clean)
    assert abs(perfect["angle"] - 20) <= 5 and perfect["removed"] > 0.7
    assert streak_report(rainy, rainy)["removed"] == 0 and streak_report(rainy, rainy)["texture_kept"] == 1
    dark = streak_report(rainy, (rainy * 0.7).astype(np.uint8))
    assert abs(dark["removed"]) < 0.05 and abs(dark["texture_kept"] - 0.49) < 0.05


def test_streak_angle_is_the_rain_peak_not_scene_lines_at_the_range_edge():
    """E(θ) rising towards -45° from a scene's diagonal lines, with a smaller bump at the rain's 10°:
    the rain angle is the bump (the plain maximum would be the scene's edge)."""
    from derain.metrics.streaks import ANGLES, rain_angle_index

    angles = np.array(ANGLES, dtype=float)
    scene = 40 * np.exp(-(angles + 45) / 20) + 14  # monotone, largest at -45°
    rain = 6 * np.exp(-((angles - 10) / 8) ** 2)
    assert ANGLES[int(np.argmax(scene + rain))] == -45
    assert ANGLES[rain_angle_index(scene + rain)] == 10
    assert ANGLES[rain_angle_index(scene)] == -45  # no peak inside: the maximum


@pytest.mark.parametrize("shape", [(97, 130), (25, 40), (12, 9)])
def test_orientation_energy_equals_one_fftconvolve_per_angle(shape):
    """The oracle: scipy's fftconvolve in 'valid' mode for each line kernel, on the same fine detail in
    float64 (the measure runs its FFTs in float32, for speed: within 1e-5, and the same rain angle)."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal import fftconvolve

    from derain.metrics.psnr_ssim import rgb_to_y
    from derain.metrics.streaks import ANGLES, DETAIL_SIGMA, _line, orientation_energy

    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    y = rgb_to_y(img).astype(np.float64)
    detail = y - gaussian_filter(y, DETAIL_SIGMA)
    expected = [np.mean(fftconvolve(detail, _line(a), mode="valid") ** 2) for a in ANGLES]
    np.testing.assert_allclose(orientation_energy(img), expected, rtol=1e-5)


def test_mean_psnr_counts_an_identical_pairs_inf_as_100_db():
    from derain.evaluation import mean_scores
    from derain.metrics import mean_psnr

    assert mean_psnr([float("inf"), 30.0]) == 65.0 and mean_psnr([20.0, 30.0]) == 25.0
    rows = [{"image": "a", "psnr": float("inf"), "ssim": 1.0}, {"image": "b", "psnr": 30.0, "ssim": 0.5}]
    assert mean_scores(rows) == {"psnr": 65.0, "ssim": 0.75}
