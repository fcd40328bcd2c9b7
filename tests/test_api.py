"""derain.load and the Derainer: type, dtype and shape round trips, gray and alpha, loading errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import derain
from derain import api
from derain.archs import create_model
from derain.errors import DerainError
from derain.hub import save_pretrained


@pytest.fixture(scope="module")
def m(tiny_model_dir):
    return derain.load(tiny_model_dir, device="cpu")


@pytest.fixture
def rgb():
    return np.random.default_rng(0).random((24, 40, 3)).astype(np.float32)


def test_import_derain_does_not_import_torch():
    code = "import sys, derain; assert 'torch' not in sys.modules; assert callable(derain.load)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_output_is_the_network_applied_and_clipped(m, rgb):
    with torch.no_grad():
        expected = m.net(torch.from_numpy(rgb).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(m(rgb), expected, atol=1e-6)


@pytest.mark.parametrize("dtype, scale", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1), (np.float64, 1)])
@pytest.mark.parametrize("shape", [(24, 40), (24, 40, 1), (24, 40, 3), (24, 40, 4), (2, 24, 40, 3)])
def test_numpy_arrays_keep_dtype_and_shape(m, rgb, dtype, scale, shape):
    image = rgb[..., : shape[-1]] if len(shape) == 3 else rgb[..., 0] if len(shape) == 2 else np.stack([rgb, rgb[::-1]])
    image = (np.round(image * scale) if scale > 1 else image).astype(dtype)
    out = m(image)
    assert out.dtype == dtype and out.shape == image.shape
    reference = m(image.astype(np.float32) / scale) * scale
    np.testing.assert_allclose(out.astype(np.float64), reference, atol=0.51 if scale > 1 else 1e-6)


def test_alpha_passes_through_untouched(m, rgb):
    rgba = (np.concatenate([rgb, rgb[..., :1] ** 2], 2) * 255).round().astype(np.uint8)
    out = m(rgba)
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.array_equal(out[..., :3], m(rgba[..., :3]))


def test_gray_is_derained_as_rgb_and_averaged_back(m, rgb):
    gray = rgb[..., 0]
    np.testing.assert_allclose(m(gray), m(np.repeat(gray[..., None], 3, 2)).mean(2), atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 37, 3), (17, 1, 3), (33, 70, 3)])
def test_any_size_works_tiled_or_not(tiny_model_dir, shape):
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    for tile in (0, 32):  # one pass, and 32-pixel tiles where the image is larger
        out = derain.load(tiny_model_dir, device="cpu", tile=tile, overlap=0)(image)
        assert out.shape == shape and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("tile", [0, 32])
def test_progress_counts_each_pass_of_the_network(tiny_model_dir, tta, tile):
    """progress(done, total) after each tile: done climbs by one to total, and total is the number of
    times the network ran (counted on the network itself): the tiles, four times over with tta."""
    d = derain.load(tiny_model_dir, device="cpu", tile=tile, overlap=0, tta=tta, rain_angle=0)  # auto adds a trial pass
    runs, calls = [], []
    d.net.register_forward_hook(lambda *_: runs.append(1))
    d.progress = lambda done, total: calls.append((done, total))
    d(np.random.default_rng(3).random((70, 100, 3)).astype(np.float32))
    assert len(runs) == (4 if tta else 1) * (1 if tile == 0 else 6)  # 32-px tiles on a 16-px grid, the last longer: 2 × 3
    assert calls == [(k, len(runs)) for k in range(1, len(runs) + 1)]


def test_strength_is_checked_and_a_model_without_a_threshold_says_it_changes_nothing(tiny_model_dir):
    with pytest.raises(DerainError, match="strength 0: give a number above 0"):
        derain.load(tiny_model_dir, strength=0)
    with pytest.warns(UserWarning, match="strength 2 changes nothing"):
        derain.load(tiny_model_dir, strength=2)  # the tiny preset has no threshold (shrink 0)


def test_batches_are_derained_image_by_image(m, rgb):
    batch = np.stack([rgb, rgb[::-1]])
    out = m(batch)
    np.testing.assert_allclose(out[1], m(rgb[::-1]), atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "P"])
def test_pil_images_keep_mode_and_size(m, rgb, mode):
    img = Image.fromarray((rgb * 255).round().astype(np.uint8)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img).astype(np.uint16) * 257))
    img.info["note"] = "kept"
    out = m(img)
    assert out.size == img.size and out.info["note"] == "kept"
    assert out.mode == ("RGB" if mode == "P" else mode)
    if mode in ("LA", "RGBA"):
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(img)[..., -1])


def test_torch_tensors_keep_dtype_shape_and_device(m, rgb):
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    out = m(chw)
    assert out.shape == chw.shape and out.dtype == torch.float32 and out.device == chw.device
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), m(rgb), atol=1e-6)
    batch = (torch.stack([chw, chw.flip(-1)]) * 255).round().to(torch.uint8)
    out = m(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert torch.equal(out[1], m(batch[1]))


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 7), np.uint8), np.zeros((8, 8), np.int32), [[0.5]],
                                 torch.zeros(5, 8, 8)])
def test_unsupported_inputs_are_clear_errors(m, bad):
    with pytest.raises(DerainError):
        m(bad)


def test_options_reach_the_derainer(tiny_model_dir):
    loaded = derain.load(tiny_model_dir, device="cpu", tile=64, overlap=16, tta=True, max_memory="2GB")
    assert (loaded.tile, loaded.overlap, loaded.tta, loaded.max_memory) == (64, 16, True, 2 << 30)
    image = np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)
    plain = derain.load(tiny_model_dir, device="cpu")(image)
    assert np.abs(loaded(image) - plain).max() > 0  # the self-ensemble changed something


def test_no_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "bundled_model_dir", lambda: tmp_path / "default_model")
    with pytest.raises(DerainError, match="no bundled model is installed.*--model"):
        derain.load()


def test_the_bundled_model_is_loaded_from_the_package_folder(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(api, "bundled_model_dir", lambda: Path(tiny_model_dir))
    assert derain.load(device="cpu").config == create_model("tiny").config


def test_bundled_model_dir_is_inside_the_package():
    assert api.bundled_model_dir().parts[-3:] == ("derain", "assets", "default_model")


def test_a_recognition_network_is_refused(tmp_path):
    save_pretrained(create_model("tiny", head="recog"), tmp_path)
    with pytest.raises(DerainError, match="not a deraining network"):
        derain.load(tmp_path)


@pytest.mark.parametrize("convert", [lambda a: a, lambda a: torch.from_numpy(a).permute(2, 0, 1)])
def test_floats_above_one_are_a_value_error_not_a_white_image(m, rgb, convert):
    as_0_255 = rgb * 255.0
    as_0_255[0, 0, 0] = 255.0
    with pytest.raises(ValueError, match=r"float images are expected in \[0, 1\], but this one reaches 255;.*uint8"):
        m(convert(as_0_255))
    m(convert(np.minimum(rgb * 1.005, 1.005).astype(np.float32)))  # rounding overshoot is tolerated


def test_bad_tiling_is_refused_at_load_naming_the_values_given(tiny_model_dir):
    with pytest.raises(DerainError, match=r"tile 20 \(rounded down to 16, a multiple of 16 px\) is too small for "
                                          r"overlap 20 \(rounded up to 32, a multiple of 16 px\)"):
        derain.load(tiny_model_dir, device="cpu", tile=20, overlap=20)
    with pytest.raises(DerainError, match="max memory 1KB is too small"):
        derain.load(tiny_model_dir, device="cpu", max_memory="1KB")
    with pytest.warns(UserWarning, match="tile 96 makes 96-px tiles that overlap by 32 px: about 2.2×"):
        derain.load(tiny_model_dir, device="cpu", tile=96)


@pytest.mark.parametrize("name", ["bundled", "default", None])
def test_the_bundled_model_has_a_name(monkeypatch, tiny_model_dir, name):
    monkeypatch.setattr(api, "bundled_model_dir", lambda: Path(tiny_model_dir))
    assert derain.load(name, device="cpu").config == create_model("tiny").config
    assert api.load_network(name).config == create_model("tiny").config


@pytest.mark.parametrize("options", [{}, {"scale": 2.0}, {"rain_angle": 30.0}])
@pytest.mark.parametrize("kind", ["float32 array", "uint8 array", "float32 tensor", "uint16 tensor"])
def test_the_input_is_never_written(tiny_model_dir, options, kind):
    """The change is summed into buffers of derain's own (no photo-sized copy too many), never into the
    caller's image: a float32 input reaches the network as itself."""
    rng = np.random.default_rng(1)
    image = {"float32 array": lambda: rng.random((40, 56, 3)).astype(np.float32),
             "uint8 array": lambda: rng.integers(0, 256, (40, 56, 3), dtype=np.uint8),
             "float32 tensor": lambda: torch.rand(3, 40, 56),
             "uint16 tensor": lambda: torch.randint(0, 65536, (3, 40, 56)).to(torch.uint16)}[kind]()
    before = image.clone() if isinstance(image, torch.Tensor) else image.copy()
    out = derain.load(tiny_model_dir, device="cpu", **options)(image)
    assert out.shape == image.shape
    if isinstance(image, torch.Tensor):
        assert torch.equal(image, before)
    else:
        np.testing.assert_array_equal(image, before)
