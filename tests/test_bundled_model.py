"""The weights shipped in the package load with no arguments and really remove some rain."""
import numpy as np

import derain
from derain.cli.demo import samples
from derain.config import load_model_config
from derain.metrics import psnr


def test_bundled_model_loads_as_the_default_preset():
    assert derain.load(device="cpu").config == load_model_config("default")


def test_bundled_model_raises_y_psnr_on_the_demo_samples():
    """MODEL_CARD.md: +1.1 dB mean on the 384-px demo; at 192 px the mean gain is 0.51 dB."""
    model = derain.load(device="cpu")
    gains = [psnr(model(rainy), clean) - psnr(rainy, clean) for _, rainy, clean in samples(192, seed=0)]
    assert np.mean(gains) > 0.25, f"Y-PSNR gains {np.round(gains, 2)}"  # measured: 0.51
