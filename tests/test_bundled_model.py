"""The weights shipped in the package load with no arguments and score what MODEL_CARD.md says."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import derain
from derain.config import load_model_config
from derain.data.layouts import list_pairs
from derain.evaluation import model_predictor, score_pairs

REPO = Path(__file__).resolve().parents[1]
DDN = REPO.parent / "shared" / "data" / "paired" / "ddn_sirr_test20"


def test_bundled_model_loads_as_the_mix_recipe_network():
    """configs/mix.yaml's network, capped (darken_only), behind a 14-level soft threshold (shrink) and 5 levels
    where the input's own rain layer exceeds 2.5 levels (shrink_streaks, streak_level)."""
    recipe = load_model_config(REPO / "configs" / "mix.yaml")
    assert derain.load(device="cpu").config == dataclasses.replace(recipe, darken_only=True, shrink=0.0549,
                                                                   shrink_streaks=0.0196, streak_level=2.5)


@pytest.mark.skipif(not DDN.is_dir(), reason="needs ../shared/data/paired/ddn_sirr_test20 (the project's research data)")
def test_bundled_model_reproduces_the_model_card_on_ddn_sirr_test20():
    """MODEL_CARD.md: 23.55 dB / 0.9009 Y-PSNR/SSIM (input 22.29 / 0.8720), no image worse than its input."""
    pairs = list_pairs(DDN)
    rows = score_pairs(pairs, ["psnr", "ssim"], "y", model_predictor(derain.load(device="cpu")))
    inputs = score_pairs(pairs, ["psnr"], "y")
    assert np.mean([r["psnr"] for r in rows]) == pytest.approx(23.55, abs=0.01)
    assert np.mean([r["ssim"] for r in rows]) == pytest.approx(0.9009, abs=0.0005)
    assert all(r["psnr"] >= i["psnr"] for r, i in zip(rows, inputs))


@pytest.fixture(scope="module")
def windy_photos():
    """scikit-image's astronaut and rocket (central 384²) with light streaks at known angles: two blown far
    off the vertical, one near it, and none."""
    from skimage import data

    from derain.data.synthesis import synthesize

    photos = {}
    for name in ("astronaut", "rocket"):
        clean = getattr(data, name)()[:384, :384]
        photos[name, None] = clean
        for angle in (55.0, -50.0, 5.0):
            rainy, _ = synthesize(clean / 255.0, "linear", np.random.default_rng(1), angle=angle)
            photos[name, angle] = (np.clip(rainy, 0, 1) * 255).round().astype(np.uint8)
    return photos


def test_auto_rain_angle_turns_only_photos_whose_rain_is_blown_over(windy_photos):
    """rain_angle="auto" finds the synthesised angle (the oracle) where it is 50–55° off the vertical, and keeps
    upright rain and a photo without rain upright."""
    import torch

    from derain.inference import derain_tensor, find_rain_angle, model_forward

    m = derain.load(device="cpu")
    forward = model_forward(m.net, m.device)
    for (name, angle), rgb in windy_photos.items():
        img = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        found = find_rain_angle(forward, m.config, img, derain_tensor(forward, m.config, img))
        if angle is None or abs(angle) < 30:
            assert found is None, (name, angle, found)
        else:
            assert found is not None and abs(found - angle) <= 10, (name, angle, found)


def test_auto_rain_angle_derains_blown_rain_and_leaves_the_rest_as_upright_does(windy_photos):
    """Blown rain gains at least 3 dB more than upright (it gains nothing upright); elsewhere "auto" writes
    what the upright model writes."""
    from skimage import data

    from derain.metrics import psnr

    upright, auto = derain.load(device="cpu", rain_angle=0), derain.load(device="cpu")  # "auto" is the default
    for (name, angle), rgb in windy_photos.items():
        clean = getattr(data, name)()[:384, :384]
        if angle is None or abs(angle) < 30:
            assert np.array_equal(auto(rgb), upright(rgb))
        else:
            assert psnr(auto(rgb), clean) > psnr(upright(rgb), clean) + 3
