"""Rain families, the Photoshop-style generator, the family mixer, the held-out split and the suite."""
import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from derain.archs import create_model
from derain.cli import main
from derain.data import RainMixDataset
from derain.data.duplicates import duplicate_groups, thumbnail
from derain.data.harm import load_harm_maps, photo_key
from derain.data.families import (SYNTHETIC_FAMILIES, add_family_rain, aligned_line_energy, check_overrides, detail_energy,
                                   holdout, in_holdout, jpeg_round_trip, mix_rain)
from derain.data.synthesis import photoshop_layer, synthesize
from derain.errors import DerainError
from derain.suite import build_suite, made_worse, score_suite, summarize
from derain.train.config import SynthConfig
from test_synthesis import angle_error, streak_angle


def psnr(a, b) -> float:
    return 10 * math.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2))


# ---- the Photoshop-style generator ----

def test_photoshop_is_a_screen_blend_of_its_layer():
    """On black, Screen at opacity o leaves o · layer; the layer peaks at `brightness`."""
    black = np.zeros((96, 96, 3))
    params = dict(layers=1, density=0.04, speck=0.6, length=20.0, angle=0.0, angle_jitter=0.0, brightness=0.8,
                  opacity=0.75)
    rainy, meta = synthesize(black, "photoshop", np.random.default_rng(3), **params)
    layer = photoshop_layer((96, 96), 0.04, 0.6, 20.0, 0.0, 0.8, np.random.default_rng(3).spawn(0) or
                            np.random.default_rng(3))
    assert meta["opacity"] == 0.75 and len(meta["layers"]) == 1
    assert np.allclose(rainy[..., 0], rainy[..., 2])  # grey rain
    assert 0.75 * 0.8 * 0.95 <= rainy.max() <= 0.75 * 0.8 + 1e-6
    assert layer.max() <= 0.8 + 1e-9


def test_photoshop_only_brightens_and_follows_the_angle(make_scene):
    clean = make_scene(160, 1)
    for angle in (-25.0, 0.0, 20.0):
        rainy, _ = synthesize(clean, "photoshop", np.random.default_rng(0), layers=1, angle=angle,
                              angle_jitter=0.0, length=25.0, density=0.04)
        assert (rainy >= clean - 1e-6).all()
        assert angle_error(streak_angle(rainy, clean), angle) < 5


def test_photoshop_density_sets_how_much_rain(make_scene):
    clean = make_scene(128, 2)
    fixed = dict(layers=1, speck=0.6, length=20.0, brightness=0.9, opacity=0.8)
    scores = [psnr(synthesize(clean, "photoshop", np.random.default_rng(0), density=d, **fixed)[0], clean)
              for d in (0.01, 0.04, 0.12)]
    assert scores[0] > scores[1] > scores[2]


# ---- the families: each has the statistics docs/datasets.md gives ----

FAMILY_BANDS = {  # docs/datasets.md: input PSNR (dB) and mean added brightness (0-1) on a 128² scene
    "light": ((22, 36), (0.0, 0.02)),
    "heavy": ((13, 26), (0.01, 0.1)),
    "photoshop": ((15, 34), (0.005, 0.13)),
    "haze": ((16, 29), (0.015, 0.12)),
    "camera": ((20, 35), (0.01, 0.08)),
    "dense": ((18, 30), (0.01, 0.08)),
    "wind": ((17, 36), (0.0, 0.04)),
    "drizzle": ((17, 33), (0.005, 0.09)),
}


@pytest.mark.parametrize("family", list(FAMILY_BANDS))
def test_each_family_has_its_documented_statistics(make_scene, family):
    (low, high), (b_low, b_high) = FAMILY_BANDS[family]
    for seed in range(6):
        clean = make_scene(128, seed % 3).astype(np.float64)
        rainy, meta = add_family_rain(clean, family, np.random.default_rng(seed))
        assert meta["family"] == family and rainy.shape == clean.shape and rainy.dtype == np.float32
        assert low <= psnr(rainy, clean) <= high, (family, seed, psnr(rainy, clean))
        assert b_low <= float((rainy - clean).mean()) <= b_high
    if family == "heavy":
        assert 3 <= len(meta["layers"]) <= 5
    if family == "light":
        assert len(meta["layers"]) == 1


def test_family_light_is_lighter_than_heavy(make_scene):
    clean = make_scene(128, 0).astype(np.float64)
    light = np.mean([psnr(add_family_rain(clean, "light", np.random.default_rng(s))[0], clean) for s in range(4)])
    heavy = np.mean([psnr(add_family_rain(clean, "heavy", np.random.default_rng(s))[0], clean) for s in range(4)])
    assert light > heavy + 5


def test_family_dense_covers_more_than_heavy_and_is_fainter():
    """On a flat grey image: dense rain lifts more of the pixels than heavy rain, and its brightest
    pixels less (docs/datasets.md: faint, semi-transparent streaks, brightness 0.1-0.4)."""
    flat = np.full((128, 128, 3), 0.3)

    def coverage_and_peak(family):
        lifts = [(add_family_rain(flat, family, np.random.default_rng(s))[0] - flat).mean(2) for s in range(6)]
        return np.mean([(d > 2 / 255).mean() for d in lifts]), np.mean([np.percentile(d, 99) for d in lifts])

    (dense_cover, dense_peak), (heavy_cover, heavy_peak) = coverage_and_peak("dense"), coverage_and_peak("heavy")
    assert dense_cover > 1.5 * heavy_cover and dense_cover > 0.25
    assert dense_peak < 0.4 < heavy_peak


def test_family_drizzle_is_short_dashes_where_dense_is_long_streaks():
    """On a flat grey image, turned so the drawn rain runs vertically: drizzle's lift has lost its correlation
    12 px along the rain (dashes 3-10 px long), dense rain's keeps most of it (30-120 px); drizzle lifts more
    pixels than heavy rain, and its brightest ones less."""
    flat = np.full((256, 256, 3), 0.3)

    def along_rain(family, seed):
        rainy, meta = add_family_rain(flat, family, np.random.default_rng(seed))
        lift = (rainy - flat).mean(2)
        angle = np.mean([layer["angle"] for layer in meta["layers"]])
        upright = ndimage.rotate(lift, angle, reshape=False, order=1)[64:192, 64:192]
        u = upright - upright.mean()
        return lift, float((u[12:] * u[:-12]).mean() / (u * u).mean())

    for seed in range(6):
        (lift, drizzle), (_, dense) = along_rain("drizzle", seed), along_rain("dense", seed)
        assert drizzle < 0.15 and dense > 0.5, (seed, drizzle, dense)
        heavy = add_family_rain(flat, "heavy", np.random.default_rng(seed))[0] - flat
        assert (lift > 2 / 255).mean() > (heavy.mean(2) > 2 / 255).mean() and np.percentile(lift, 99) < 0.4


def test_family_wind_leans_35_to_70_degrees_either_way():
    """The structure tensor of the added rain (test_synthesis.streak_angle, independent of the generator) finds
    each image's streaks 30-75 degrees from vertical, both ways over seeds, near the drawn layers' mean angle."""
    flat = np.full((128, 128, 3), 0.3)
    found = []
    for seed in range(8):
        rainy, meta = add_family_rain(flat, "wind", np.random.default_rng(seed))
        angle = streak_angle(rainy, flat)
        assert 30 <= abs(angle) <= 75 and angle_error(angle, np.mean([l["angle"] for l in meta["layers"]])) < 5
        found.append(angle)
    assert min(found) < -30 and max(found) > 30


def test_camera_family_is_saved_as_jpeg_and_none_is_untouched(make_scene):
    clean = make_scene(64, 0).astype(np.float64)
    rainy, meta = add_family_rain(clean, "camera", np.random.default_rng(0))
    assert np.allclose(rainy * 255, np.round(rainy * 255), atol=1e-4)  # decoded 8-bit JPEG
    assert np.array_equal(jpeg_round_trip(rainy, meta["jpeg_applied"]).shape, rainy.shape)
    same, meta = add_family_rain(clean, "none", np.random.default_rng(0))
    assert meta == {"family": "none"} and np.array_equal(same, clean.astype(np.float32))
    with pytest.raises(DerainError, match="unknown rain family"):
        add_family_rain(clean, "snow", np.random.default_rng(0))


def test_the_mixer_draws_families_by_weight(make_scene):
    clean = make_scene(32, 0).astype(np.float64)
    rng = np.random.default_rng(0)
    counts = Counter(mix_rain(clean, rng, {"light": 3, "none": 1})[1]["family"] for _ in range(400))
    assert set(counts) == {"light", "none"} and 0.68 < counts["light"] / 400 < 0.82
    with pytest.raises(DerainError, match="unknown"):
        mix_rain(clean, rng, {"sleet": 1})


def test_overrides_replace_a_familys_ranges_and_name_their_errors(make_scene):
    """Faint streaks: every layer's drawn core brightness within the override, far below the family's own."""
    clean = make_scene(64, 0).astype(np.float64)
    faint = {"heavy": {"brightness": [0.05, 0.1]}}
    for seed in range(4):
        _, meta = add_family_rain(clean, "heavy", np.random.default_rng(seed), faint)
        assert all(0.05 <= layer["brightness"] <= 0.1 for layer in meta["layers"])
        _, own = add_family_rain(clean, "heavy", np.random.default_rng(seed))
        assert all(layer["brightness"] >= 0.5 for layer in own["layers"])
    assert check_overrides(faint) == faint
    with pytest.raises(DerainError, match="heavy .linear rain. has no parameter.s. .'speck'."):
        check_overrides({"heavy": {"speck": [0.3, 1.0]}})
    with pytest.raises(DerainError, match="'none' has no parameters"):
        check_overrides({"none": {"width": 2}})
    with pytest.raises(DerainError, match="heavy: expected a mapping"):
        check_overrides({"heavy": 3})


# ---- the held-out split ----

def test_holdout_is_by_name_whatever_the_other_files(tmp_path, make_image):
    noise = np.random.default_rng(0).integers(0, 256, (400, 8, 8, 3), dtype=np.uint8)  # 400 distinct photos
    files = [make_image(tmp_path / f"img_{i:03d}.png", array=noise[i]) for i in range(400)]
    train, val = holdout(files, share=0.15)
    assert 0.1 < len(val) / 400 < 0.2 and not set(train) & set(val) and len(train) + len(val) == 400
    _, val_again = holdout(list(reversed(files[:200])) + files[300:], share=0.15)
    assert set(val_again) == set(val) - set(files[200:300])


def test_holdout_never_splits_a_photo_from_its_copies(tmp_path, make_image, make_scene):
    """A copy at another size (or in another format) joins its photo's group; a photo is held out only if
    every copy's name hashes into the held-out share, else the whole group trains."""
    names = [f"img_{i:03d}" for i in range(40)]
    held = [n for n in names if in_holdout(n + ".png", 0.5)]
    kept = [n for n in names if not in_holdout(n + ".png", 0.5)]
    scene_a = np.round(make_scene((60, 80), 7) * 255).astype(np.uint8)
    scene_b = np.round(make_scene((60, 80), 8)[:, ::-1] * 255).astype(np.uint8)
    files = [make_image(tmp_path / f"{held[0]}.png", array=scene_a),  # held out by name, its copy is not
             make_image(tmp_path / f"{kept[0]}.png", array=np.asarray(Image.fromarray(scene_a).resize((120, 90)))),
             make_image(tmp_path / f"{held[1]}.png", array=scene_b),  # held out by name, and so is its copy
             make_image(tmp_path / f"{held[2]}.png", array=scene_b[::2, ::2]),
             make_image(tmp_path / f"{held[3]}.png", array=np.random.default_rng(9).integers(0, 256, (60, 60, 3),
                                                                                            dtype=np.uint8))]
    groups = duplicate_groups(files)
    assert sorted(map(len, groups)) == [1, 2, 2]
    assert thumbnail(files[0]) @ thumbnail(files[1]) > 0.99 > 0.5 > abs(thumbnail(files[0]) @ thumbnail(files[2]))
    train, val = holdout(files, share=0.5)
    assert train == files[:2] and val == files[2:]


# ---- the online training data ----

def test_rain_mix_dataset_is_seeded_and_gives_clean_pairs_for_no_rain(tmp_path, make_image):
    files = [make_image(tmp_path / f"{i}.png", 48, i) for i in range(3)]
    ds = RainMixDataset(files, crop=32, seed=1, weights={"heavy": 1}, samples_per_epoch=5)
    rainy, clean = ds[2]
    assert rainy.shape == clean.shape == (3, 32, 32) and len(ds) == 5
    assert torch.equal(ds[2][0], rainy) and not torch.equal(rainy, clean)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], rainy)
    rainy, clean = RainMixDataset(files, crop=32, weights={"none": 1})[0]
    assert torch.equal(rainy, clean)
    faint = RainMixDataset(files, crop=32, seed=1, weights={"heavy": 1}, samples_per_epoch=5,
                           overrides={"heavy": {"brightness": [0.05, 0.1]}})
    assert 0 < (faint[2][0] - faint[2][1]).mean() < (ds[2][0] - ds[2][1]).mean() / 3


# ---- the validation suite ----

@pytest.fixture
def clean_photos(tmp_path, make_image):
    root = tmp_path / "clean"
    for i in range(12):
        make_image(root / ("a" if i % 2 else "b") / f"p{i}.png", (40, 56), i)
    return root


def test_suite_is_deterministic_and_has_every_family(clean_photos, tmp_path):
    meta = build_suite(clean_photos, tmp_path / "s1", seed=0, crop=32, share=0.5)
    build_suite(clean_photos, tmp_path / "s2", seed=0, crop=32, share=0.5)
    header = json.loads(meta.read_text())
    names = sorted(p.name for p in (tmp_path / "s1" / "rainy").iterdir())
    assert {n.split("__")[0] for n in names} == set(SYNTHETIC_FAMILIES)
    held = {e["source"] for e in header["pairs"]}
    assert held == {p.relative_to(clean_photos).as_posix()
                    for p in holdout(sorted(clean_photos.rglob("*.png")), share=0.5)[1]}
    for name in names:
        assert (tmp_path / "s1" / "rainy" / name).read_bytes() == (tmp_path / "s2" / "rainy" / name).read_bytes()


def test_suite_scores_identity_and_a_darkening_model(clean_photos, tmp_path):
    build_suite(clean_photos, tmp_path / "s", crop=32, share=0.5)
    identity = summarize(score_suite(None, tmp_path / "s"))
    assert identity["none"]["psnr"] == 100.0 and identity["none"]["worse_share"] == 0
    assert all(identity[f]["gain"] == 0 for f in SYNTHETIC_FAMILIES if f != "none")
    darken = summarize(score_suite(lambda img: img // 2, tmp_path / "s"))
    assert darken["none"]["worse_share"] == 1.0 and darken["none"]["brightness_shift"] < -20
    assert darken["light"]["worse_share"] == 1.0 and darken["light"]["gain"] < 0


def test_made_worse_lists_harmed_images_worst_first():
    rows = [{"image": "a", "family": "light", "input_psnr": 30.0, "psnr": 29.5},
            {"image": "b", "family": "light", "input_psnr": 30.0, "psnr": 31.0},
            {"image": "c", "family": "heavy", "input_psnr": 20.0, "psnr": 18.0},
            {"image": "d", "family": "none", "input_psnr": 100.0, "psnr": 39.0},
            {"image": "e", "family": "none", "input_psnr": 100.0, "psnr": 41.0}]
    assert [(r["image"], r["margin"]) for r in made_worse(rows)] == [("c", -2.0), ("d", -1.0), ("a", -0.5)]
    full = [{**r, "input_ssim": 1.0, "ssim": 1.0, "brightness_shift": 0.0} for r in rows]
    assert summarize(full)["light"]["worse_share"] == 0.5 and summarize(full)["none"]["worse_share"] == 0.5


def test_suite_command_writes_the_report(clean_photos, tmp_path, tiny_model_dir, capsys):
    assert main(["suite", "--model", tiny_model_dir, "--clean", str(clean_photos), "--dir", str(tmp_path / "s"),
                 "--crop", "32", "--out", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["families"]) == set(SYNTHETIC_FAMILIES) | {"rain (all)"}
    printed = capsys.readouterr().out
    assert "| light |" in printed
    rows = list(csv.DictReader((tmp_path / "report" / "scores.csv").open()))
    harmed = [r for r in rows if float(r["psnr"]) < (40 if r["family"] == "none" else float(r["input_psnr"]))]
    for r in harmed:
        assert r["image"] in printed
    assert ("worse than the input" in printed or "below 40 dB" in printed) == bool(harmed)
    assert summary["tta"] is False
    assert main(["suite", "--model", tiny_model_dir, "--tta", "--clean", str(clean_photos), "--dir",
                 str(tmp_path / "s"), "--crop", "32", "--out", str(tmp_path / "tta")]) == 0
    with_tta = json.loads((tmp_path / "tta" / "summary.json").read_text())
    assert with_tta["tta"] is True and with_tta["families"] != summary["families"]
    assert main(["suite", "--model", tiny_model_dir, "--rain-angle", "45", "--clean", str(clean_photos), "--dir",
                 str(tmp_path / "s"), "--crop", "32", "--out", str(tmp_path / "turned")]) == 0
    turned = json.loads((tmp_path / "turned" / "summary.json").read_text())
    assert turned["rain_angle"] == 45 and turned["families"] != summary["families"]
    assert main(["suite", "--model", tiny_model_dir, "--rain-angle", "auto", "--clean", str(clean_photos), "--dir",
                 str(tmp_path / "s"), "--crop", "32", "--out", str(tmp_path / "auto")]) == 0
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["rain_angle"] == "auto"
    assert main(["suite", "--model", tiny_model_dir, "--strength", "2", "--clean", str(clean_photos), "--dir",
                 str(tmp_path / "s"), "--crop", "32", "--out", str(tmp_path / "strong")]) == 0
    assert json.loads((tmp_path / "strong" / "summary.json").read_text())["strength"] == 2
    assert "derain: warning: strength 2 changes nothing" in capsys.readouterr().err  # the tiny preset has no threshold
    assert main(["suite", "--model", "none", "--tta"]) == 2
    assert "--tta, --rain-angle and --strength run a model" in capsys.readouterr().err


# ---- the full-resolution detail path ----

def test_detail_path_decoder_any_size_and_gradients():
    net = create_model({"dim": 8, "depth": 1, "num_heads": 2, "window_size": 4, "patch_size": 4,
                        "local_reduction": 2, "se_window": 3, "spp_kernels": [3], "detail_dim": 6})
    assert net.decoder.detail is not None
    img = torch.rand(1, 3, 37, 50, requires_grad=True)
    out = net(img)
    assert out.shape == img.shape
    out.sum().backward()
    assert net.decoder.detail.detail[0].weight.grad.abs().sum() > 0
    # a pixel's output depends on its full-resolution neighbours through the detail path
    g = torch.autograd.grad(net(img)[0, 0, 20, 20], img)[0][0].abs().sum(0)
    assert g[20, 21] > 0 and g[21, 20] > 0


def reference_image_decoder(dec, feats, img):
    """D_dr with a detail path, written out in plain NCHW ops in the order the paper's figure reads:
    conv, shuffle to full resolution, crop, activation, then the detail convs on the image."""
    def stack(seq, x):
        for conv in seq[::2]:
            x = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, padding=1), 0.2)
        return x
    coarse = F.pixel_shuffle(F.conv2d(dec.spp(feats).contiguous(), dec.conv.weight, dec.conv.bias, padding=1),
                             dec.patch_size)[..., :img.shape[-2], :img.shape[-1]]
    d = dec.detail
    fused = stack(d.fuse, torch.cat([F.leaky_relu(coarse, 0.2), stack(d.detail, img)], 1))
    return img + F.conv2d(fused, d.out.weight, d.out.bias, padding=1)


def test_detail_path_fast_layout_matches_the_reference_values_and_gradients():
    """The decoder runs channels-last with the activation before the shuffle, for speed; values and
    every gradient match the plain NCHW reference."""
    torch.manual_seed(0)
    net = create_model({"dim": 8, "depth": 1, "num_heads": 2, "window_size": 4, "patch_size": 4,
                        "local_reduction": 2, "se_window": 3, "spp_kernels": [3], "detail_dim": 6})
    feats = torch.randn(2, 8, 10, 13).contiguous(memory_format=torch.channels_last).requires_grad_()
    img = torch.rand(2, 3, 37, 50, requires_grad=True)
    results = []
    for forward in (net.decoder, lambda f, i: reference_image_decoder(net.decoder, f, i)):
        net.zero_grad()
        out = forward(feats, img)
        grads = torch.autograd.grad((out * torch.linspace(0, 1, 50)).sum(), [feats, img, *net.decoder.parameters()])
        results.append((out, grads))
    (out, grads), (ref, ref_grads) = results
    assert torch.allclose(out, ref, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-5, rtol=1e-4)


def test_synth_command_makes_photoshop_and_mixed_pairs(clean_photos, tmp_path):
    assert main(["synth", str(clean_photos), "-o", str(tmp_path / "ps"), "--model", "photoshop", "--n", "2",
                 "--opacity", "0.8", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "ps" / "meta.json").read_text())
    assert all(p["opacity"] == 0.8 and p["model"] == "photoshop" for p in meta["pairs"])
    assert main(["synth", str(clean_photos), "-o", str(tmp_path / "mix"), "--model", "mix", "--n", "8",
                 "--families", "heavy=1,none=1", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "mix" / "meta.json").read_text())
    assert {p["family"] for p in meta["pairs"]} == {"heavy", "none"}
    assert all(p["rainy"].endswith(".png") for p in meta["pairs"])
    assert main(["synth", str(clean_photos), "-o", str(tmp_path / "x"), "--families", "light=1"]) == 2


def test_training_draws_rain_online_and_never_sees_held_out_photos(clean_photos, tmp_path):
    from derain.train.config import load_train_config, resolve_data
    from derain.train.pipeline import train
    from derain.train.rundir import RunDir
    from derain.train.stages import build_stage, training_photos

    config = {
        "model": {"dim": 8, "depth": 1, "num_heads": 2, "window_size": 4, "patch_size": 2, "local_reduction": 2,
                  "se_window": 3, "spp_kernels": [3], "detail_dim": 4},
        "device": "cpu",
        "data": {"real_clear": [str(clean_photos / "a"), str(clean_photos / "b")], "holdout": 0.5,
                 "synth": {"clean": str(clean_photos), "online": True, "families": {"light": 1, "none": 1},
                           "samples_per_epoch": 8}},
        "train": {"iters": 3, "batch_size": 4, "crop": 16, "log_every": 1, "val_every": 0},
    }
    held = set(holdout(sorted(clean_photos.rglob("*.png")), share=0.5)[1])
    cfg = load_train_config(config)
    cfg.data = resolve_data(cfg.data, ["scratch", "recon"])
    assert set(training_photos(cfg.data.real_clear, 0.5)) == set(clean_photos.rglob("*.png")) - held
    stage = build_stage("scratch", cfg, RunDir(tmp_path / "probe"), torch.device("cpu"))
    assert isinstance(stage.dataset, RainMixDataset) and not set(stage.dataset.files) & held
    assert stage.dataset.weights == {"light": 1.0, "none": 1.0}
    run = train(config, tmp_path / "run", stages=["scratch"])
    assert run.is_done("scratch") and not (tmp_path / "run" / "data").exists()  # nothing synthesised to disk
    with pytest.raises(DerainError, match="families"):
        load_train_config({**config, "data": {**config["data"], "synth": {"online": True, "families": {"hail": 1}}}})


def test_detail_energy_ranks_thin_lines_above_flat_and_smooth_images():
    flat = np.full((36, 36, 3), 0.5)
    ramp = np.repeat(np.linspace(0, 1, 36)[None, :, None], 36, 0).repeat(3, 2)
    lines = flat.copy()
    lines[:, 3::6] = 1.0  # placed so the reflected borders see the same pattern as the interior
    assert detail_energy(flat) < 1e-12 and detail_energy(ramp) < detail_energy(lines) / 100
    # a 1-px line of +0.5 every 6 columns: (0.5 - 0.5/5)² on the line, (0.5/5)² on the 4 neighbours within the box
    expected = (0.4 ** 2 + 4 * 0.1 ** 2) / 6
    assert detail_energy(lines) == pytest.approx(expected, rel=1e-9)


def test_no_rain_crops_are_the_most_detailed_of_the_candidates(tmp_path):
    flat, lines = np.full((64, 64, 3), 0.5), np.full((64, 64, 3), 0.5)
    lines[:, ::5] = 1.0
    files = [tmp_path / "flat.png", tmp_path / "lines.png"]
    for f, img in zip(files, (flat, lines)):
        Image.fromarray((img * 255).astype(np.uint8)).save(f)
    share = lambda ds: np.mean([float(ds[i][1].std()) > 0 for i in range(40)])  # noqa: E731
    one = RainMixDataset(files, crop=32, weights={"none": 1}, samples_per_epoch=40)
    four = RainMixDataset(files, crop=32, weights={"none": 1}, samples_per_epoch=40, negatives=4)
    assert 0.3 < share(one) < 0.7 and share(four) > 0.85  # 1 - 0.5⁴ = 0.94 expected
    rain_one = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=5)
    rain_four = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=5, negatives=4)
    assert all(torch.equal(rain_one[i][0], rain_four[i][0]) for i in range(5))  # rainy crops are untouched
    rain_one = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=40)
    rain_four = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=40, detailed_rain=4)
    assert 0.3 < share(rain_one) < 0.7 and share(rain_four) > 0.85  # detailed_rain picks the rainy crops' scenes
    with pytest.raises(DerainError, match="aligned_negatives and harmed_negatives must be at least 1"):
        RainMixDataset(files, crop=32, samples_per_epoch=5, detailed_rain=0)


def test_aligned_line_energy_scores_bright_lines_along_the_rain_and_not_across_it():
    flat = np.full((36, 36, 3), 0.5)
    along, across, dots, dark = flat.copy(), flat.copy(), flat.copy(), flat.copy()
    along[:, 3::6] = 1.0
    across[3::6, :] = 1.0
    dots[3::6, 3::6] = 1.0
    dark[:, 3::6] = 0.0
    # a 1-px line of +0.5 every 6 columns: 0.5 − 0.5/5 = 0.4 over the 1×5 mean on the line, below it (cut) beside it
    assert aligned_line_energy(along) == pytest.approx(0.4 ** 2 / 6, rel=1e-9)
    assert aligned_line_energy(across) < 1e-12
    assert aligned_line_energy(dark) == pytest.approx(4 * 0.1 ** 2 / 6, rel=1e-9)  # only the 4 neighbours, 0.1 above
    assert aligned_line_energy(dots) < aligned_line_energy(along) / 20
    assert detail_energy(across) == pytest.approx(detail_energy(along))  # what detail_energy cannot tell apart


def test_aligned_rain_picks_rainy_crops_with_lines_along_the_rain(tmp_path):
    along, across = np.full((64, 64, 3), 0.5), np.full((64, 64, 3), 0.5)
    along[:, ::5], across[::5, :] = 1.0, 1.0
    files = [tmp_path / "along.png", tmp_path / "across.png"]
    for f, img in zip(files, (along, across)):
        Image.fromarray((img * 255).astype(np.uint8)).save(f)
    # the clean crop's lines run down the columns (each column constant); flips and turns make either photo either way
    vertical = lambda ds: np.mean([float(ds[i][1][0].std(0).max()) == 0 for i in range(40)])  # noqa: E731
    one = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=40)
    four = RainMixDataset(files, crop=32, weights={"light": 1}, samples_per_epoch=40, aligned_rain=4)
    assert 0.3 < vertical(one) < 0.7 and vertical(four) > 0.85  # 1 - 0.5⁴ = 0.94 expected
    with pytest.raises(DerainError, match="set one of them"):
        RainMixDataset(files, crop=32, samples_per_epoch=5, detailed_rain=2, aligned_rain=2)
    clean_one = RainMixDataset(files, crop=32, weights={"none": 1}, samples_per_epoch=40)
    clean_four = RainMixDataset(files, crop=32, weights={"none": 1}, samples_per_epoch=40, aligned_negatives=4)
    assert 0.3 < vertical(clean_one) < 0.7 and vertical(clean_four) > 0.85  # the no-rain crops, picked the same way
    assert all(torch.equal(clean_four[i][0], clean_four[i][1]) for i in range(5))  # and still without rain
    with pytest.raises(DerainError, match="negatives, aligned_negatives and harmed_negatives"):
        RainMixDataset(files, crop=32, samples_per_epoch=5, negatives=2, aligned_negatives=2)



def test_harmed_negatives_pick_the_crops_the_model_changes_most(tmp_path):
    """One photo, dark on the left and bright on the right, with a model's change on its left half only: no-rain
    crops picked by the harm map come from the left (their mean shows it), with or without flips and turns."""
    photo = np.full((64, 64, 3), 0.7)
    photo[:, :32] = 0.3
    path = tmp_path / "halves.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(path)
    harm = np.zeros((64, 64), np.uint8)
    harm[:, :32] = 40
    maps = {photo_key(path): harm}
    dark = lambda ds: np.mean([float(ds[i][1].mean()) < 0.5 for i in range(40)])  # noqa: E731
    one = RainMixDataset([path], crop=32, weights={"none": 1}, samples_per_epoch=40, harm_maps=maps)
    four = RainMixDataset([path], crop=32, weights={"none": 1}, samples_per_epoch=40, harm_maps=maps, harmed_negatives=4)
    assert 0.3 < dark(one) < 0.7 and dark(four) > 0.85  # a crop is mostly left or right; 1 - 0.5⁴ = 0.94 expected
    assert all(four[i][1].shape == (3, 32, 32) and torch.equal(four[i][0], four[i][1]) for i in range(5))  # no rain
    plain = RainMixDataset([path], crop=32, weights={"light": 1}, samples_per_epoch=5)
    mapped = RainMixDataset([path], crop=32, weights={"light": 1}, samples_per_epoch=5, harm_maps=maps, harmed_negatives=4)
    assert all(torch.equal(plain[i][0], mapped[i][0]) for i in range(5))  # rainy crops are untouched
    with pytest.raises(DerainError, match="harmed_negatives needs harm_maps"):
        RainMixDataset([path], crop=32, samples_per_epoch=5, harmed_negatives=4)
    with pytest.raises(DerainError, match="set one of them"):
        RainMixDataset([path], crop=32, samples_per_epoch=5, negatives=2, harm_maps=maps, harmed_negatives=2)
    with pytest.raises(DerainError, match="lack 1 of the 1 training photos"):
        RainMixDataset([path], crop=32, samples_per_epoch=5, harm_maps={"0" * 40: harm}, harmed_negatives=2)
    wrong = RainMixDataset([path], crop=32, weights={"none": 1}, samples_per_epoch=5,
                           harm_maps={photo_key(path): harm[:, :40]}, harmed_negatives=2)
    with pytest.raises(DerainError, match="harm map is"):
        wrong[0]
    with pytest.raises(ValueError, match="harmed_negatives needs harm_maps"):
        SynthConfig(online=True, harmed_negatives=4)
    np.save(tmp_path / "one.npy", harm)
    (tmp_path / "text.npz").write_text("not maps")
    for bad in ("one.npy", "text.npz", "absent.npz"):
        with pytest.raises(DerainError, match="not a harm-map file"):
            load_harm_maps(tmp_path / bad)


def test_zoomed_crops_are_a_smaller_window_enlarged(tmp_path):
    """zoom_share 0 leaves every sample as it was; zoom_share 1 gives each clean crop a window of crop/z px enlarged:
    1-px lines every 4 px come back wider (fewer pixels at the line's full height), in [0, 1]."""
    stripes = np.full((96, 96, 3), 0.2)
    stripes[:, ::4] = 0.9
    Image.fromarray((stripes * 255).round().astype(np.uint8)).save(tmp_path / "stripes.png")
    files = [tmp_path / "stripes.png"]
    plain = RainMixDataset(files, crop=32, seed=3, weights={"none": 1}, samples_per_epoch=6)
    same = RainMixDataset(files, crop=32, seed=3, weights={"none": 1}, samples_per_epoch=6, zoom=3.0, zoom_share=0.0)
    assert all(torch.equal(plain[i][1], same[i][1]) for i in range(6))
    zoomed = RainMixDataset(files, crop=32, seed=3, weights={"none": 1}, samples_per_epoch=6, zoom=3.0, zoom_share=1.0)
    for i in range(6):
        crop, flat = zoomed[i][1], plain[i][1]
        assert crop.shape == flat.shape and 0 <= float(crop.min()) and float(crop.max()) <= 1
        bright = lambda c: int(((c[0] > 0.55) & (c[0] < 0.85)).sum())  # noqa: E731  # between the two levels
        assert bright(flat) == 0 and bright(crop) > 32  # the enlarged lines have soft sides
    with pytest.raises(DerainError, match="zoom must be at least 1"):
        RainMixDataset(files, crop=32, zoom=0.5)
