"""The `real` rain family: streak layers harvested from rainy photos (derain.data.rain_bank).

The oracle is synthetic rain whose layer is known: `streak_layer` drawn at a known angle on a photo."""
import json

import numpy as np
import pytest
from skimage import data as skdata

from derain.cli import main
from derain.data.datasets import RainMixDataset
from derain.data.families import add_family_rain, check_overrides
from derain.data.rain_bank import RainBank, rain_angle, rain_layer
from derain.data.synthesis import draw_param, streak_layer
from derain.errors import DerainError

STRENGTH = 0.4  # the streaks' added light, 0-1


def rainy_photo(angle: float, seed: int = 0, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A flat grey photo with streaks at `angle`: (uint8 photo, the streaks' true layer in grey levels)."""
    layer = streak_layer((size, size), 0.03, 30.0, angle, 2.0, np.random.default_rng(seed))
    photo = np.clip(0.3 + STRENGTH * layer[..., None], 0, 1).repeat(3, 2)
    return np.round(photo * 255).astype(np.uint8), STRENGTH * 255 * layer


@pytest.mark.parametrize("angle", [-25, 0, 20])
def test_rain_layer_recovers_synthetic_streaks_at_their_angle(angle):
    photo, truth = rainy_photo(angle)
    assert rain_angle(photo) == angle
    layer, inner = rain_layer(photo), np.s_[20:-20, 20:-20]
    assert layer.shape == truth.shape and layer.min() >= 0
    assert np.corrcoef(layer[inner].ravel(), truth[inner].ravel())[0, 1] > 0.85
    assert 0.5 < layer[inner].mean() / truth[inner].mean() < 1.1  # a top-hat keeps most of a streak's light


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera"])
def test_rain_layer_keeps_little_of_a_clean_photo(name):
    """Texture and edges of a clean photo are mostly not long thin bright lines: much less comes out of it
    than out of the same photo with rain, and what rain adds to the layer is the rain's (scikit-image's
    astronaut and cameraman, with their thin bright lines, keep the most: 0.34 of the rainy layer)."""
    clean = getattr(skdata, name)()
    clean = clean if clean.ndim == 3 else clean[..., None].repeat(3, 2)
    streaks = 255 * STRENGTH * streak_layer(clean.shape[:2], 0.03, 30.0, 0.0, 2.0, np.random.default_rng(0))
    rainy = np.clip(clean + streaks[..., None], 0, 255).astype(np.uint8)
    from_clean, from_rainy = rain_layer(clean, angle=0), rain_layer(rainy, angle=0)
    assert from_clean.mean() < 0.4 * from_rainy.mean()
    assert np.corrcoef((from_rainy - from_clean).ravel(), streaks.ravel())[0, 1] > 0.85


@pytest.mark.parametrize("turn", [90, -90])
def test_upright_rain_skips_the_turns_and_matches_the_turned_path(turn):
    """At angle 0 rain_layer skips both turns. The turned path, given the photo turned a quarter and told
    its rain lies at ±90°, turns it upright on the pixel grid, so it must give the same layer, turned."""
    photo = skdata.astronaut()
    photo = np.clip(photo + 255 * STRENGTH * streak_layer(photo.shape[:2], 0.03, 30.0, 0.0, 2.0,
                                                             np.random.default_rng(0))[..., None], 0, 255)
    photo = photo.astype(np.uint8)
    upright = rain_layer(photo, 0)
    assert upright.mean() > 1  # the streaks are there to compare
    assert np.allclose(np.rot90(upright), rain_layer(np.ascontiguousarray(np.rot90(photo)), turn), atol=1e-2)


@pytest.fixture
def bank_photos(tmp_path, make_image):
    return [make_image(tmp_path / f"rain{k}.png", array=rainy_photo(angle, k)[0]) for k, angle in enumerate((-10, 15))]


def test_real_family_adds_the_banks_streaks_within_the_documented_gain(bank_photos, make_scene):
    bank = RainBank(bank_photos)
    assert [p.name for p in bank.photos] == ["rain0.png", "rain1.png"] and len(bank.layers) == 2
    clean = make_scene(96, 0).astype(np.float64)
    top = max(float(layer.max()) for layer in bank.layers) / 255
    for seed in range(6):
        rainy, meta = add_family_rain(clean, "real", np.random.default_rng(seed), bank=bank)
        again, _ = add_family_rain(clean, "real", np.random.default_rng(seed), bank=bank)
        added = rainy - clean
        assert meta["family"] == "real" and 1.0 <= meta["gain"] <= 2.5 and 0.7 <= meta["scale"] <= 1.4
        assert np.array_equal(rainy, again) and added.min() >= -1e-6  # seeded, and rain only adds light
        assert 0.002 < added.mean() and added.max() <= meta["gain"] * top + 1e-4
    faint = {"real": {"gain": [0.1, 0.1]}}
    assert check_overrides(faint) == faint
    rainy, meta = add_family_rain(clean, "real", np.random.default_rng(0), faint, bank)
    assert meta["gain"] == 0.1 and (rainy - clean).max() <= 0.1 * top + 1e-4


def test_real_family_needs_a_bank_and_names_bad_input(bank_photos, tmp_path, make_scene):
    clean = make_scene(32, 0).astype(np.float64)
    with pytest.raises(DerainError, match="needs a bank"):
        add_family_rain(clean, "real", np.random.default_rng(0))
    with pytest.raises(DerainError, match="needs a bank"):
        RainMixDataset(bank_photos, crop=32, weights={"real": 1})
    with pytest.raises(DerainError, match="missing.png: rain bank photo not found"):
        RainBank([tmp_path / "missing.png"])
    with pytest.raises(DerainError, match=r"real \(bank rain\) has no parameter\(s\) \['width'\]"):
        check_overrides({"real": {"width": 2}})


def test_training_pairs_and_synth_draw_from_the_bank(bank_photos, tmp_path, make_image):
    clean_dir = tmp_path / "clean"
    for k in range(2):
        make_image(clean_dir / f"c{k}.png", size=64, seed=k)
    ds = RainMixDataset(sorted(clean_dir.iterdir()), crop=48, weights={"real": 1}, bank=bank_photos)
    rainy, clean = ds[0]
    assert rainy.shape == clean.shape == (3, 48, 48) and float((rainy - clean).mean()) > 0.002
    out = tmp_path / "pairs"
    assert main(["synth", str(clean_dir), "-o", str(out), "--model", "mix", "--families", "real=1",
                 "--bank", *map(str, bank_photos), "--no-progress"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert [p.rsplit("/", 1)[1] for p in meta["bank"]] == ["rain0.png", "rain1.png"]
    assert {p["family"] for p in meta["pairs"]} == {"real"} and all(p["model"] == "bank" for p in meta["pairs"])
    assert main(["synth", str(clean_dir), "-o", str(tmp_path / "x"), "--bank", str(bank_photos[0])]) == 2


@pytest.mark.parametrize("angle", [-20, 15])
def test_real_family_angle_turns_the_banks_streaks_by_that_many_degrees(tmp_path, make_image, angle):
    """A bank of vertical rain, turned by `angle`: the rain angle derain.metrics.streaks measures on the
    drawn layer is `angle`. The default (0) draws no random number, so seeded streams stay as they were."""
    bank = RainBank([make_image(tmp_path / "rain.png", array=rainy_photo(0, 3)[0])])
    layer = bank.draw((160, 160), np.random.default_rng(0), 1.0, angle)
    assert layer.shape == (160, 160) and layer.min() >= 0
    assert layer[:16].mean() > 0.3 * layer.mean() and layer[:, :16].mean() > 0.3 * layer.mean()  # corners filled
    photo = np.round(np.clip(0.3 + 2 * layer, 0, 1) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    assert rain_angle(photo) == angle
    clean = np.full((64, 64, 3), 0.3)
    turned, meta = add_family_rain(clean, "real", np.random.default_rng(1), {"real": {"angle": [angle, angle]}}, bank)
    assert meta["angle"] == angle
    plain, meta = add_family_rain(clean, "real", np.random.default_rng(1), bank=bank)
    rng = np.random.default_rng(1)  # by hand: gain, scale, then the crop, with nothing drawn for the angle
    gain, scale = draw_param("gain", (1.0, 2.5), rng), draw_param("scale", (0.7, 1.4), rng)
    expected = np.clip(clean + gain * bank.draw((64, 64), rng, scale)[..., None], 0, 1)
    assert "angle" not in meta and np.allclose(plain, expected, atol=1e-6)


def dashes_photo(length: int, seed: int = 0, size: int = 160) -> np.ndarray:
    """Flat grey (60 levels) with 2-px-wide vertical dashes `length` px long, 100 levels brighter, apart
    from each other: one in each cell of a grid, at a random height in it."""
    rng = np.random.default_rng(seed)
    y = np.full((size, size), 60.0)
    cell = length + 8
    for top in range(8, size - cell - 8, cell):  # off the edges, which reflect a dash into a longer one
        for left in range(4, size - 6, 9):
            t = top + int(rng.integers(0, cell - length))
            y[t:t + length, left:left + 2] = 160.0
    return y.astype(np.uint8)[..., None].repeat(3, 2)


def test_a_shorter_harvest_length_keeps_the_short_dashes_a_longer_one_drops():
    """By hand: an opening by a vertical line keeps a 2-px-wide dash whole (100 grey levels over its
    surroundings, 100 × 219/255 in studio-range Y) if the line fits inside it, and removes it otherwise."""
    photo = dashes_photo(11)
    assert rain_angle(photo) == 0
    dash = photo[..., 0] == 160
    assert np.allclose(rain_layer(photo, 0, along=9)[dash], 100 * 219 / 255, atol=1)
    assert np.abs(rain_layer(photo, 0, along=15)).max() < 1
    assert np.abs(rain_layer(photo, 0, along=9)[~dash]).max() < 1


def test_longest_drops_the_lines_at_least_that_long_and_keeps_the_shorter_streaks(tmp_path, make_image):
    """By hand: 11-px dashes beside a 2-px-wide pole the photo's full height, all 100 grey levels over the
    background (100 × 219/255 in studio-range Y). Without `longest` both are harvested whole; with
    longest 40, only the dashes."""
    photo = dashes_photo(11)
    photo[:, 7:9] = 160  # between the dashes' columns 4-5 and 13-14
    pole = np.zeros(photo.shape[:2], bool)
    pole[:, 7:9] = True
    dash = (photo[..., 0] == 160) & ~pole
    level = 100 * 219 / 255
    kept, cut = rain_layer(photo, 0, along=9), rain_layer(photo, 0, along=9, longest=40)
    assert np.allclose(kept[pole], level, atol=1) and np.allclose(kept[dash], level, atol=1)
    assert np.abs(cut[pole]).max() < 1 and np.allclose(cut[dash], level, atol=1)
    bank = RainBank([make_image(tmp_path / "p.png", array=photo)], along=9, longest=40)
    assert bank.longest == 40 and np.allclose(bank.layers[0], cut, atol=0.1)
    clean = np.full((48, 48, 3), 0.2)
    with pytest.raises(DerainError, match="longest None differs from the bank's 40"):
        add_family_rain(clean, "real", np.random.default_rng(0), {"real": {"along": 9}}, bank)
    for bad in (9, 5, "x", True):
        with pytest.raises(DerainError, match="longest must be a length in px above along"):
            RainBank([tmp_path / "p.png"], along=9, longest=bad)


def test_a_bank_harvested_at_two_lengths_holds_a_layer_per_photo_and_length(tmp_path, make_image):
    photos = [make_image(tmp_path / f"d{k}.png", array=dashes_photo(11, k)) for k in range(2)]
    single, both = RainBank(photos), RainBank(photos, along=[15, 9, 9])
    assert single.along == (15,) and len(single.layers) == 2
    assert both.along == (9, 15) and len(both.layers) == 4
    assert [float(layer.max()) > 80 for layer in both.layers] == [True, False, True, False]
    clean = np.full((48, 48, 3), 0.2)
    rainy, meta = add_family_rain(clean, "real", np.random.default_rng(0), {"real": {"along": [9, 15]}}, both)
    assert meta["model"] == "bank" and "along" not in meta
    with pytest.raises(DerainError, match=r"along 7 differs from the bank's \[9, 15\]"):
        add_family_rain(clean, "real", np.random.default_rng(0), {"real": {"along": 7}}, both)
    for bad in (0, [], [9, "x"], True):
        with pytest.raises(DerainError, match="along must be a length in px"):
            RainBank(photos, along=bad)


def test_training_pairs_take_the_harvest_length_from_the_family_params(tmp_path, make_image):
    photos = [make_image(tmp_path / "d.png", array=dashes_photo(11))]
    clean = [make_image(tmp_path / "c.png", array=np.full((64, 64, 3), 40, np.uint8))]
    ds = RainMixDataset(clean, crop=48, weights={"real": 1}, bank=photos, overrides={"real": {"along": 9}})
    assert ds.bank.along == (9,) and float((ds[0][0] - ds[0][1]).max()) > 0.3
