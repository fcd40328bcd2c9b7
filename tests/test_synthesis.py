import json
import math
import socket

import numpy as np
import pytest
import torch

from derain.cli import main
from derain.data import detect_layout, gaussian_blur, gradients, list_pairs, load_pair_uint8
from derain.data import demo
from derain.data.synthesis import streak_kernel, synth_folder, synthesize
from derain.errors import DerainError
from derain.imageio import read_image_uint8

STREAK = dict(layers=1, length=30.0, width=1.5, brightness=0.8)  # fixed, so density alone sets the PSNR


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1 / np.mean((a.astype(np.float64) - b) ** 2))


def streak_angle(rainy: np.ndarray, clean: np.ndarray) -> float:
    """Streak direction in degrees from vertical (positive leans /), from the structure tensor of rainy - clean.

    Gradients are averaged onto the centres of 2×2 cells, so that pixel noise adds no diagonal bias.
    """
    residual = torch.from_numpy((rainy - clean).mean(axis=2)).double()[None, None]
    dx, dy = gradients(gaussian_blur(residual, 1.0))
    gx, gy = (dx[..., :-1, :] + dx[..., 1:, :]) / 2, (dy[..., :, :-1] + dy[..., :, 1:]) / 2
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    normal = math.degrees(0.5 * math.atan2(2 * jxy, jxx - jyy))  # dominant gradient, from the x axis
    return (normal + 90) % 180 - 90  # the streak (sin θ, -cos θ) is perpendicular to it


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 90) % 180 - 90)


def test_same_seed_same_rain_other_seed_other_rain(make_scene):
    clean = make_scene(96)
    for model in ("linear", "camera"):
        a, meta_a = synthesize(clean, model, np.random.default_rng(5))
        b, meta_b = synthesize(clean, model, np.random.default_rng(5))
        c, _ = synthesize(clean, model, np.random.default_rng(6))
        assert a.dtype == np.float32 and a.shape == clean.shape and 0 <= a.min() and a.max() <= 1
        assert np.array_equal(a, b) and meta_a == meta_b
        assert not np.array_equal(a, c)


def test_psnr_falls_in_band_for_density(make_scene):
    bands = {0.01: (21, 32), 0.03: (17, 25), 0.1: (12, 19)}
    for seed in range(4):
        clean = make_scene(192, seed)
        scores = [psnr(synthesize(clean, "linear", np.random.default_rng(seed), density=d, blend="add",
                                  **STREAK)[0], clean) for d in bands]
        for score, (low, high) in zip(scores, bands.values()):
            assert low <= score <= high
        assert scores[0] > scores[1] > scores[2]
        camera = psnr(synthesize(clean, "camera", np.random.default_rng(seed), density=0.03, **STREAK)[0], clean)
        assert 15 <= camera <= 32


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_rain_sheet_lifts_half_its_peak_unevenly_along_the_rain(angle):
    clean = np.full((256, 256, 3), 0.3)
    no_streaks = dict(layers=1, brightness=0.0, angle=angle, angle_jitter=0.0, blend="add")
    rainy, meta = synthesize(clean, "linear", np.random.default_rng(1), sheet=0.4, **no_streaks)
    lift = (rainy - clean).mean(axis=2)
    assert meta["sheet"] == 0.4
    assert 0.17 <= lift.mean() <= 0.23  # the sheet map has mean 0.5 before clipping at 0 and 1
    assert lift.std() > 0.04  # uneven, unlike the veil
    assert angle_error(streak_angle(rainy, clean), angle) < 8
    plain, meta = synthesize(clean, "linear", np.random.default_rng(1), sheet=0.0, **no_streaks)
    assert "sheet" not in meta and np.abs(plain - clean).max() < 1e-6


def test_streak_kernel_leans_right_for_positive_angle():
    k = streak_kernel(length=20, angle=45, width=1.0)
    r = k.shape[0] // 2
    assert k.max() == pytest.approx(1.0)
    assert k[r - 5, r + 5] > 0.9 and k[r + 5, r - 5] > 0.9  # along /: up-right and down-left
    assert k[r - 5, r - 5] < 1e-3  # nothing along \


@pytest.mark.parametrize("model", ["linear", "camera"])
@pytest.mark.parametrize("angle", [-40.0, -15.0, 0.0, 25.0, 60.0])
def test_streak_orientation_matches_requested_angle(model, angle):
    clean = np.full((128, 128, 3), 0.3, np.float32)
    rainy, meta = synthesize(clean, model, np.random.default_rng(0), angle=angle, angle_jitter=0.0)
    assert all(layer["angle"] == angle for layer in meta["layers"])
    assert angle_error(streak_angle(rainy, clean), angle) < 10


def test_camera_model_lifts_dark_regions_and_adds_noise():
    clean = np.full((128, 128, 3), 0.7, np.float32)
    clean[:, :64] = 0.05  # a dark left half
    params = dict(density=0.02, **STREAK)
    stats = {}
    for model in ("linear", "camera"):
        residual = synthesize(clean, model, np.random.default_rng(1), **params)[0] - clean
        laplacian = (4 * residual[1:-1, 1:-1] - residual[:-2, 1:-1] - residual[2:, 1:-1]
                     - residual[1:-1, :-2] - residual[1:-1, 2:])
        stats[model] = {"dark_lift": np.median(residual[:, :64]), "bright_lift": np.median(residual[:, 64:]),
                        "noise": np.median(np.abs(laplacian[:, 70:]))}
    linear, camera = stats["linear"], stats["camera"]
    assert abs(linear["dark_lift"]) < 1e-6 and linear["noise"] < 1e-6  # untouched between streaks
    assert camera["dark_lift"] > 0.05  # the veil lifts the shadows...
    assert camera["dark_lift"] > camera["bright_lift"] + 0.05  # ...more than the highlights
    assert camera["noise"] > 0.005


def test_unknown_parameters_and_models_are_refused(make_scene):
    with pytest.raises(DerainError, match="defocus"):
        synthesize(make_scene(16), "linear", np.random.default_rng(0), defocus=1.0)
    with pytest.raises(DerainError, match="unknown rain model"):
        synthesize(make_scene(16), "snow", np.random.default_rng(0))


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def clean_folder(tmp_path, make_image):
    make_image(tmp_path / "src" / "b.png", size=(60, 70), seed=1)
    make_image(tmp_path / "src" / "nested" / "a.jpg", size=(50, 40), seed=2)
    return tmp_path / "src"


def test_cli_is_byte_identical_and_pairs_by_stem(tmp_path, clean_folder):
    args = [str(clean_folder), "--model", "camera", "--n", "3", "--seed", "1", "--no-progress"]
    assert main(["synth", *args, "-o", str(tmp_path / "x")]) == 0
    assert main(["synth", *args, "-o", str(tmp_path / "y")]) == 0
    x = _tree(tmp_path / "x")
    assert x == _tree(tmp_path / "y")
    assert main(["synth", *args, "-o", str(tmp_path / "x")]) == 0  # rerun into its own output
    assert _tree(tmp_path / "x") == x
    assert sorted(x) == ["clean/0000_b.png", "clean/0001_a.png", "clean/0002_b.png", "meta.json",
                         "rainy/0000_b.jpg", "rainy/0001_a.jpg", "rainy/0002_b.jpg"]
    assert detect_layout(tmp_path / "x") == "paired"
    pairs = list_pairs(tmp_path / "x")
    assert [p.name for p in pairs] == ["0000_b", "0001_a", "0002_b"]
    rainy, clean = load_pair_uint8(pairs[0])
    assert clean.shape == (60, 70, 3) and np.array_equal(clean, read_image_uint8(clean_folder / "b.png"))
    meta = json.loads((tmp_path / "x" / "meta.json").read_text())
    assert [p["source"] for p in meta["pairs"]] == ["b.png", "nested/a.jpg", "b.png"]
    assert all(p["layers"] and 70 <= p["jpeg_quality"] <= 95 for p in meta["pairs"])
    other = tmp_path / "z"
    assert main(["synth", *args[:-2], "2", "--no-progress", "-o", str(other)]) == 0
    assert _tree(other) != x


def test_linear_crops_and_overrides(tmp_path, clean_folder):
    meta_path = synth_folder(clean_folder, tmp_path / "out", "linear", n=2, seed=0, crop=32,
                             params={"angle": 10.0, "density": (0.01, 0.02)}, progress=False)
    meta = json.loads(meta_path.read_text())
    assert meta["params"] == {"angle": 10.0, "density": [0.01, 0.02]}
    assert all(abs(layer["angle"] - 10.0) <= 4.0 for p in meta["pairs"] for layer in p["layers"])  # jitter
    assert all(0.01 <= sum(layer["density"] for layer in p["layers"]) <= 0.021 for p in meta["pairs"])
    for pair in list_pairs(tmp_path / "out"):
        assert pair.rainy.suffix == ".png"
        assert load_pair_uint8(pair)[0].shape == (32, 32, 3)


def test_cli_takes_a_negative_range_joined_with_equals(tmp_path, clean_folder):
    out = tmp_path / "out"
    assert main(["synth", str(clean_folder), "--n", "1", "--angle=-20,-10", "--no-progress", "-o", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"] == {"angle": [-20.0, -10.0]}
    assert all(-24.0 <= layer["angle"] <= -6.0 for layer in meta["pairs"][0]["layers"])


def test_output_folder_with_foreign_files_is_refused(tmp_path, clean_folder):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(DerainError, match="not empty"):
        synth_folder(clean_folder, tmp_path / "busy", "linear", n=1, progress=False)
    assert main(["synth", str(clean_folder), "-o", str(tmp_path / "busy"), "--no-progress"]) == 2
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_demo_builds_offline_and_is_cached(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("demo.build tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    paths = demo.build(tmp_path / "demo", seed=0, size=48, n_clean=3, n_rainy=2, n_pairs=2)
    assert set(paths) == {"clean", "rainy", "paired"}
    assert len(list(paths["clean"].glob("*.png"))) == 3
    assert len(list(paths["rainy"].glob("*.jpg"))) == 2
    assert detect_layout(paths["paired"]) == "paired" and len(list_pairs(paths["paired"])) == 2
    rainy, clean = load_pair_uint8(list_pairs(paths["paired"])[0])
    assert rainy.shape == (48, 48, 3) and psnr(rainy / 255, clean / 255) < 40
    before = _tree(tmp_path / "demo")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")}
    demo.build(tmp_path / "demo", seed=0, size=48, n_clean=3, n_rainy=2, n_pairs=2)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")} == mtimes  # nothing rewritten
    demo.build(tmp_path / "demo", seed=1, size=48, n_clean=2, n_rainy=2, n_pairs=2)
    after = _tree(tmp_path / "demo")
    assert after != before and len(list(paths["clean"].glob("*.png"))) == 2  # rebuilt, stale files removed


def test_synth_on_shared_clean_photos(tmp_path, shared_data):
    clean_dir = shared_data / "clean" / "set5"
    args = [str(clean_dir), "--model", "camera", "--n", "2", "--seed", "1", "--crop", "64", "--no-progress"]
    assert main(["synth", *args, "-o", str(tmp_path / "a")]) == 0
    assert main(["synth", *args, "-o", str(tmp_path / "b")]) == 0
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert len(list_pairs(tmp_path / "a")) == 2


def test_shared_paired_test_set_is_detected(shared_data):
    root = shared_data / "paired" / "ddn_sirr_test20"
    assert detect_layout(root) == "paired"
    pairs = list_pairs(root)
    assert len(pairs) == 20
    rainy, clean = load_pair_uint8(pairs[0])
    assert rainy.shape == clean.shape and 10 < psnr(rainy / 255, clean / 255) < 45
