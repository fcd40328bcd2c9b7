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
