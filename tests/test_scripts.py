import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_rain_layer_splits_a_known_lift_and_a_known_stripe(tmp_path, make_scene, make_image):
    """A uniform lift of 20 grey levels is all low band (MSE 400 in RGB, 400·(219/255)² ≈ 295 in Y);
    a one-pixel stripe pattern is all high band."""
    clean = (make_scene(96) * 200).astype(np.uint8)
    stripes = np.zeros_like(clean)
    stripes[:, ::2] = 20
    for name, rainy in (("lift", clean + 20), ("stripes", clean + stripes)):
        make_image(tmp_path / "rainy" / f"{name}.png", array=rainy)
        make_image(tmp_path / "clean" / f"{name}.png", array=clean)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "rain_layer.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: [float(v) for v in line.replace("/", " ").split()[1:]] for line in out.splitlines()[1:3]}
    lift, spread, slope, low, high = rows["lift"]
    assert abs(lift - 17.2) < 0.6 and spread < 0.5 and abs(slope - 1) < 0.02
    assert abs(low - 295) < 15 and high < 1
    lift, spread, slope, low, high = rows["stripes"]
    assert abs(lift - 8.6) < 0.6 and low < 80 and high > 60


def test_carry_run_round_trips_a_run_without_tensorboard(tmp_path):
    run = tmp_path / "run"
    (run / "scratch").mkdir(parents=True)
    (run / "tb" / "scratch").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "scratch" / "latest.json").write_text('{"step": 5}')
    (run / "tb" / "scratch" / "events").write_text("x")
    script = str(ROOT / "scripts" / "carry_run.py")
    subprocess.run([sys.executable, script, "pack", str(run), str(tmp_path / "c.tar.gz")], check=True)
    subprocess.run([sys.executable, script, "unpack", str(tmp_path / "c.tar.gz"), str(tmp_path / "new")], check=True)
    assert (tmp_path / "new" / "scratch" / "latest.json").read_text() == '{"step": 5}'
    assert not (tmp_path / "new" / "tb").exists()
    again = subprocess.run([sys.executable, script, "unpack", str(tmp_path / "c.tar.gz"), str(tmp_path / "new")])
    assert again.returncode != 0


def test_real_rain_report_tells_streak_removal_from_darkening():
    """Taking 40 levels off 10% of the pixels (streaks removed) moves the mean Y by about 4·219/255 but
    not the median; taking 10 levels off everything moves both by about 10·219/255."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import brightness_change

    rainy = np.full((50, 50, 3), 120, np.uint8)
    destreaked = rainy.copy()
    destreaked[::10] -= 40
    mean, median = brightness_change(rainy, destreaked)
    assert abs(mean - (-40 * 0.1 * 219 / 255)) < 0.3 and median == 0
    mean, median = brightness_change(rainy, rainy - 10)
    assert abs(mean + 10 * 219 / 255) < 0.6 and abs(median + 10 * 219 / 255) < 0.6


def test_the_background_shift_sees_darkening_but_not_streaks_taken_away():
    """Streaks of +40 on every tenth row (0, 10, ..., 40) of a flat 50-row photo: the rows more than two
    away from a streak (27 of 50) are the background; taking the streaks off leaves it unchanged, darkening
    everything by 10 moves it by 10·219/255."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import background_shift

    clean = np.full((50, 50, 3), 120, np.uint8)
    rainy = clean.copy()
    rainy[::10] += 40
    assert background_shift(rainy, clean) == (0.0, 27 / 50)
    shift, share = background_shift(rainy, clean - 10)
    assert abs(shift + 10 * 219 / 255) < 0.6 and share == 27 / 50


def test_the_shift_by_region_puts_streaks_taken_on_the_streaks_and_a_darkening_on_the_rest():
    """Vertical streaks 2 px wide and +40 levels, every 32nd column of a flat photo: taking them off moves
    Y only where they were (40·219/255 on 2 of every 32 columns, all of it in the 'streaks' region). A
    darkening by 10 moves every pixel alike, so each region gets its share of the pixels: the rest is
    what lies more than 3 px from a streak, 75 of the 96 columns (the first streak is on the edge, with one
    rim). The regions add up to the mean change."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import brightness_change, layer_reference, shift_by_region

    clean = np.full((96, 96, 3), 120, np.uint8)
    rainy = clean.copy()
    rainy[:, ::32] += 40
    rainy[:, 1::32] += 40
    for output in (clean, rainy - 10):
        parts = shift_by_region(rainy, output)
        assert abs(parts.sum() - brightness_change(rainy, output)[0]) < 1e-9
    assert abs(shift_by_region(rainy, clean)[0] + 40 * 219 / 255 * 2 / 32) < 0.05
    assert np.abs(shift_by_region(rainy, clean)[1:]).max() < 1e-9
    parts = shift_by_region(rainy, rainy - 10)
    assert abs(parts[3] / parts.sum() - 75 / 96) < 0.01
    taken = layer_reference(1.0)(rainy)
    assert np.abs(taken.astype(int) - clean).max() <= 2  # the layer is the streaks: the reference takes them


def test_a_perfect_removal_of_faint_streaks_lies_off_the_streak_region():
    """The region split's streaks are where the rain layer exceeds 4 levels: faint streaks (+3 in R, G and B,
    16 px from the strong ones) fall in the rest, so even the clean photo, the perfect output, puts part of
    its darkening off the streaks. Y is whole levels (BT.601 of 120, 123 and 160: 119, 122 and 153), so the
    faint ones add 3 and the strong 34: 3/32 of 2·34/32 + 3/32, 4.2% (--regions measures it on the suite)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import off_streaks, shift_by_region

    clean = np.full((96, 96, 3), 120, np.uint8)
    rainy = clean.copy()
    rainy[:, ::32] += 40
    rainy[:, 1::32] += 40
    rainy[:, 16::32] += 3
    y_strong, y_faint = 34, 3
    truth = shift_by_region(rainy, clean)
    assert abs(truth[3] + y_faint / 32) < 0.01 and abs(truth[1]) < 1e-9 and abs(truth[2]) < 1e-9
    assert abs(off_streaks(truth) - y_faint / (2 * y_strong + y_faint)) < 0.005
    assert off_streaks(np.array([0.5, -0.1, 0.0, 0.0])) == 0.0  # no darkening: nothing lies off


def test_the_shell_recipes_parse_and_their_overrides_are_valid_config_keys():
    import re

    from derain.train.config import load_train_config

    for script in sorted((ROOT / "scripts").glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)
    text = (ROOT / "scripts" / "ablation_table3.sh").read_text()
    overrides = [o.replace("$iters", "1000").replace("$crop", "96").replace("$teachers", "recog,recon")
                 .replace("$seed", "3") for o in re.findall(r'--set "?([\w.]+=[^ ")]+)', text)]
    assert len(overrides) == 8
    cfg = load_train_config(ROOT / "configs" / "mix.yaml", overrides=overrides)
    assert cfg.seed == 3
    assert cfg.stages["finetune"].iters == cfg.stages["scratch"].iters == 1000
    assert cfg.stages["distill"].teachers == ["recog", "recon"]


def test_sirr100_split_counts_each_real_photo_once(shared_data):
    """scripts/sirr100_split.csv names every sirr100 photo once; each duplicate looks like the photo it
    names (grey 24×24 thumbnails correlate ≥ 0.8; crops of one scene fall below 0.99), and no two
    counted photos (bank, choice or report) correlate ≥ 0.99. The bank is every second of the first 30."""
    from derain.data.duplicates import thumbnail

    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import read_split, split_rows

    folder = shared_data / "real_rain" / "sirr100"
    pairs = {r["file"]: r["duplicate_of"] for r in split_rows() if r["split"] == "duplicate"}
    assert len(pairs) == 25 and pairs["70.jpg"] == "26.jpg"
    split = {s: read_split(str(folder), s) for s in ("bank", "choice", "report", "duplicate")}
    assert sorted(p.name for s in split.values() for p in s) == sorted(p.name for p in folder.iterdir())
    assert len(split["choice"]) == len(split["bank"]) == 15 and len(split["report"]) == 45
    first30 = sorted([*split["choice"], *split["bank"]])
    assert list(split["bank"]) == first30[0::2] and list(split["choice"]) == first30[1::2]
    assert set(split["report"].values()) == {"yes", "no"} and set(split["choice"].values()) == {""}
    counted = [*split["bank"], *split["choice"], *split["report"]]
    assert all(folder / t in counted for t in pairs.values())
    assert all(thumbnail(folder / a) @ thumbnail(folder / b) >= 0.8 for a, b in pairs.items())
    t = np.array([thumbnail(p) for p in counted])
    corr = t @ t.T - 2 * np.eye(len(t))
    assert corr.max() < 0.99


def test_holdout_keeps_every_sirr100_duplicate_pair_on_one_side(shared_data):
    """The hand-checked duplicate pairs of scripts/sirr100_split.csv: `duplicate_groups` links all but the
    one tighter crop (145.jpg of 133.jpg), and the training holdout splits none of them (by name alone,
    7 pairs straddled it)."""
    from derain.data.duplicates import duplicate_groups
    from derain.data.families import holdout
    from derain.data.layouts import list_images

    sys.path.insert(0, str(ROOT / "scripts"))
    from real_rain_report import split_rows

    files = list_images(shared_data / "real_rain" / "sirr100")
    pairs = {r["file"]: r["duplicate_of"] for r in split_rows() if r["split"] == "duplicate"}
    group_of = {f.name: i for i, g in enumerate(duplicate_groups(files)) for f in g}
    assert [a for a, b in pairs.items() if group_of[a] != group_of[b]] == ["145.jpg"]
    _, val = holdout(files)
    held = {f.name for f in val}
    assert len(held) == 9 and not [a for a, b in pairs.items() if (a in held) != (b in held)]


def test_table3_report_averages_seeds_by_hand(tmp_path, capsys):
    import json

    sys.path.insert(0, str(ROOT / "scripts"))
    from table3_report import FAMILIES, main

    def write(out, variant, gain, clean, ddn, worse):
        families = {f: {"gain": gain, "psnr": 0.0, "worse_share": 0.0, "brightness_shift": 0.0} for f in FAMILIES}
        families["rain (all)"] = {"gain": gain, "worse_share": 0.05, "brightness_shift": 1.0}
        families["none"] = {"gain": None, "psnr": clean, "worse_share": 1.0, "brightness_shift": -4.0}
        for kind, summary in (("suite", {"families": families}),
                              ("ddn", {"images": 20, "mean": {"psnr": ddn, "ssim": 0.88}, "worse_than_input": worse})):
            folder = out / "scores" / f"{kind}-{variant}"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(summary))

    write(tmp_path / "s0", "v2", 2.0, 33.0, 23.0, 1)
    write(tmp_path / "s1", "v2", 3.0, 34.0, 24.0, 2)
    write(tmp_path / "s0", "recog", 1.0, 30.0, 22.0, 0)  # in one seed only: left out
    assert main([str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 1 + 2
    assert lines[2] == ("| V2, no teachers, mean of 2 | +2.50 | +2.50 | +2.50 | +2.50 | +2.50 | +2.50 (5%) "
                        "| 33.50 (-4.00) | 23.50 / 0.8800 (1.5 of 20) |")
    assert lines[4].startswith("| V2, no teachers, s1 | +3.00")
    assert main([str(tmp_path / "empty")]) == 1


def test_device_pack_keeps_the_holdout_split(tmp_path, make_image):
    """Training photos become JPEGs under names that still hash into training; held-out ones keep theirs."""
    from derain.data.families import holdout
    from derain.data.layouts import list_images

    data = tmp_path / "data"
    for i in range(24):
        make_image(data / "clean" / "set" / f"p{i:02d}.png", size=48, seed=i)
    make_image(data / "real_rain" / "sirr100" / "1.jpg", size=48)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_pack.py"), "--data", str(data),
                          "--out", str(tmp_path / "pack")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "hold-out split as for the originals: " in out.stdout
    train, val = holdout(list_images(tmp_path / "pack" / "clean"))
    original_train, original_val = holdout(list_images(data / "clean"))
    assert sorted(f.stem for f in train) == sorted(f.stem for f in original_train) and val
    assert {f.name for f in val} == {f.name for f in original_val}
    assert any(f.suffix == ".jpg" for f in train) and (tmp_path / "pack" / "real_rain" / "sirr100" / "1.jpg").is_file()


def thresholded_tiny_net():
    """A tiny network with the detail path, darken_only and a 7.65-level threshold, small seeded weights."""
    import torch

    from derain.archs import create_model
    from derain.config import load_model_config

    torch.manual_seed(0)
    net = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4, "darken_only": True, "shrink": 0.03}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.02)
    return net


def test_threshold_margin_reads_the_raw_residual_and_rebuilds_the_shipped_output():
    """The raw residual is the decoder's with threshold and cap off (an offset put in the output conv's bias
    comes back whole); threshold and cap applied to it give the model's own output (the oracle)."""
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from threshold_margin import raw_residual, shipped_output

    net = thresholded_tiny_net()
    with torch.no_grad():
        net.decoder.detail.out.weight.zero_()
        net.decoder.detail.out.bias.fill_(-0.02)  # a constant residual of -5.1 grey levels
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    np.testing.assert_allclose(raw_residual(net, img), -5.1, atol=1e-3)
    assert net.decoder.shrink == 0.03 and net.decoder.darken_only  # restored
    with torch.no_grad():
        net.decoder.detail.out.weight.normal_(0, 3.0)
        net.decoder.detail.out.bias -= (0.03 * 255 + np.median(raw_residual(net, img))) / 255  # half past -T
        expected = net(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    out = shipped_output(img, raw_residual(net, img), 0.03 * 255, True)
    assert np.abs(out.astype(int) - np.clip(np.round(expected * 255), 0, 255)).max() <= 1
    assert (out < img).mean() > 0.05 and (out == img).mean() > 0.05  # both sides of the threshold


def test_hysteresis_alone_is_the_model_and_lowers_the_threshold_only_near_its_changes():
    """threshold_hysteresis.py: with no lower threshold its output is the model's own (within rounding); with
    one, pixels darken further only within `grow` px of a change past the model's threshold, by at most the
    difference of the thresholds, and nowhere brighten."""
    import torch
    from scipy.ndimage import binary_dilation

    sys.path.insert(0, str(ROOT / "scripts"))
    from threshold_hysteresis import hysteresis
    from threshold_margin import raw_residual

    net = thresholded_tiny_net()
    with torch.no_grad():
        net.decoder.detail.out.weight.normal_(0, 3.0)
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        net.decoder.detail.out.bias -= (0.03 * 255 + np.percentile(raw_residual(net, img), 1)) / 255  # 1% past -T
        own = net(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    alone, low = hysteresis(net, None, 1)(img), hysteresis(net, 3.0, 1)(img)
    assert np.abs(alone.astype(int) - np.clip(np.round(own * 255), 0, 255)).max() <= 1
    near = binary_dilation((-np.minimum(raw_residual(net, img), 0)).max(2) > 0.03 * 255, iterations=1)
    assert 0.05 < near.mean() < 0.95  # both kinds of pixel are present
    extra = alone.astype(int) - low
    assert extra.min() >= 0 and extra[~near].max() == 0 and extra[near].max() > 0
    assert extra.max() <= round(0.03 * 255 - 3.0) + 1


def test_receptive_field_of_two_3x3_convs_is_two_pixels():
    """Two stacked 3×3 convs see a 5×5 square (radius 2, by hand); a mass split between the centre and a
    pixel 3 away puts 50% at radius 0 and 90% at radius 3."""
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from receptive_field import gradient_mass, radii

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 3, padding=1))
    img = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    mass = gradient_mass(net, img, 12, 10)
    (r50, r90, r99), farthest = radii(mass, 12, 10)
    assert farthest == 2 and r99 <= 2 and mass[12, 10] > 0
    assert mass[:, :8].sum() == 0 and mass[15:].sum() == 0
    hand = np.zeros((9, 9))
    hand[4, 4] = hand[1, 4] = 0.5
    assert radii(hand, 4, 4) == ([0, 3, 3], 3)


def test_harm_maps_record_what_derain_run_changes_on_each_training_photo(tmp_path, tiny_model_dir, make_image,
                                                                        monkeypatch):
    """The maps of scripts/harm_maps.py against an independent path: `derain run --rain-angle 0`'s PNG output
    minus its input, largest over R, G and B, for every photo outside the held-out share, keyed by the file's
    SHA-1. Upright even where `--rain-angle auto` would turn a photo (here it would turn every one)."""
    import hashlib
    import runpy

    from derain import inference
    from derain.cli import main
    from derain.data.families import holdout
    from derain.data.harm import load_harm_maps

    clean = tmp_path / "clean"
    files = [make_image(clean / f"p{i}.png", size=(40 + 4 * i, 48), seed=i) for i in range(8)]
    monkeypatch.setattr(inference, "find_rain_angle", lambda forward, cfg, img, upright, **trial: 45.0)
    monkeypatch.setattr(sys, "argv", ["harm_maps.py", "--model", tiny_model_dir, "--clean", str(clean),
                                      "--holdout", "0.3", "-o", str(tmp_path / "maps.npz")])
    runpy.run_path(str(ROOT / "scripts" / "harm_maps.py"), run_name="__main__")
    maps = load_harm_maps(tmp_path / "maps.npz")
    train, held = holdout(files, share=0.3)
    assert held and len(maps) == len(train)
    assert main(["run", *map(str, train), "-o", str(tmp_path / "out"), "--model", tiny_model_dir, "--format", "png",
                 "--scale", "1", "--rain-angle", "0"]) == 0
    for f in train:
        ran = np.asarray(Image.open(tmp_path / "out" / f.name), dtype=np.int16)
        expected = np.abs(ran - np.asarray(Image.open(f), dtype=np.int16)).max(axis=2)
        np.testing.assert_array_equal(maps[hashlib.sha1(f.read_bytes()).hexdigest()], expected)
    assert any(m.max() > 0 for m in maps.values())  # the tiny random model changes something


class _Pairs:
    """Seeded random (rainy, clean) crops; item `fail_at` raises, as a killed race would stop there."""

    def __init__(self, n=64, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch

        if i == self.fail_at:
            raise RuntimeError("killed")
        g = torch.Generator().manual_seed(i)
        clean = torch.rand(3, 16, 16, generator=g)
        return (clean + 0.2 * torch.rand(3, 16, 16, generator=g)).clamp(0, 1), clean


def test_arch_race_resumed_after_a_kill_ends_where_an_unbroken_race_ends(tmp_path):
    import pytest
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from arch_race import train_for

    from derain.archs.plain_cnn import PlainCNN

    def race(dataset, state_dir, resume=False):
        torch.manual_seed(1)
        net = PlainCNN(4, 3)
        steps, _ = train_for(net, dataset, 0, 2, steps_cap=6, state_dir=state_dir, resume=resume,
                             checkpoint_every=2, cosine=True)
        return net, steps

    unbroken, steps = race(_Pairs(), tmp_path / "a")
    assert steps == 6
    with pytest.raises(RuntimeError, match="killed"):  # batch 4 (items 8, 9) fails after step 4's checkpoint
        race(_Pairs(fail_at=9), tmp_path / "b")
    assert (tmp_path / "b" / "latest.json").read_text().count('"step": 4') == 1
    with pytest.raises(SystemExit, match="--resume"):
        race(_Pairs(), tmp_path / "b")
    resumed, steps = race(_Pairs(), tmp_path / "b", resume=True)
    assert steps == 6
    for a, b in zip(unbroken.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    assert not torch.equal(PlainCNN(4, 3).out.weight, unbroken.out.weight)  # it did train
