"""`derain gallery`: panels, index.html, summary.json and contact sheet of real-rain style photos."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import derain
from derain.cli import main
from derain.data.demo import load_photo
from derain.figures import GAP
from derain.metrics import bundled_model

SIZES = {"a_rain": (110, 150), "b_rain": (140, 104), "c_rain": (120, 120)}  # name: (height, width)


def rainy_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A crop of a scikit-image photo with bright slanted streaks."""
    photo = load_photo(["astronaut", "coffee", "chelsea"][seed % 3])
    crop = photo[:height, :width].astype(np.float32)
    y, x = np.mgrid[0:height, 0:width]
    streaks = ((x + y // 4 + 7 * seed) % 11 == 0) & (np.random.default_rng(seed).random((height, width)) < 0.7)
    return np.clip(crop + 90.0 * streaks[..., None], 0, 255).astype(np.uint8)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "real"
    folder.mkdir()
    for seed, (name, (height, width)) in enumerate(SIZES.items()):
        Image.fromarray(rainy_photo(height, width, seed)).save(folder / f"{name}.png")
    return folder


def gallery(src, out, *args):
    return main(["gallery", str(src), "-o", str(out), "--device", "cpu", *map(str, args)])


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_panels_index_summary_and_contact_sheet(photos, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "out"
    assert gallery(photos, out, "--model", f"tiny={tiny_model_dir}") == 0
    assert capsys.readouterr().err == ""
    model = derain.load(tiny_model_dir, device="cpu")
    summary = json.loads((out / "summary.json").read_text())
    index = (out / "index.html").read_text()
    assert summary["columns"] == ["input", "tiny"]
    assert [row["image"] for row in summary["images"]] == list(SIZES)
    niqe = bundled_model()
    panels = []
    for row, (name, (height, width)) in zip(summary["images"], SIZES.items()):
        panel = read(out / f"{name}.png")
        panels.append(panel)
        assert panel.shape == (height, 2 * width + GAP, 3)
        source = read(photos / f"{name}.png")
        assert np.array_equal(panel[:, :width], source)  # no downscaling below --max-side
        assert (panel[:, width: width + GAP] == 255).all()
        derained = panel[:, width + GAP:]
        assert np.abs(derained.astype(int) - model(source).astype(int)).max() <= 1
        assert row["niqe"]["input"] == pytest.approx(niqe.score(source), abs=1e-6)
        assert row["niqe"]["tiny"] == pytest.approx(niqe.score(derained), abs=0.05)
        assert f'src="{name}.png"' in index
        assert f"{name}.png: input NIQE {row['niqe']['input']:.2f} → tiny {row['niqe']['tiny']:.2f}" in index
    for column in ("input", "tiny"):
        expected = np.mean([row["niqe"][column] for row in summary["images"]])
        assert summary["mean_niqe"][column] == pytest.approx(expected, rel=1e-12)
    means = summary["mean_niqe"]
    assert f"input NIQE {means['input']:.2f} → tiny {means['tiny']:.2f}" in index
    assert "lower NIQE is better" in index
    assert "the input, then the models in order" in index

    sheet = read(out / "contact_sheet.png")
    heights = [round(p.shape[0] * 1200 / p.shape[1]) for p in panels]
    assert sheet.shape == (sum(heights) + GAP * (len(panels) - 1), 1200, 3)
    assert (sheet[heights[0]: heights[0] + GAP] == 255).all()
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_n_limits_the_count_and_max_side_downscales(tmp_path, tiny_model_dir):
    src = tmp_path / "big"
    src.mkdir()
    originals = {}
    for seed, name in enumerate(("p1", "p2", "p3")):
        originals[name] = rainy_photo(280, 420, seed)
        Image.fromarray(originals[name]).save(src / f"{name}.png")
    out = tmp_path / "out"
    assert gallery(src, out, "--model", f"tiny={tiny_model_dir}", "--n", "2", "--max-side", "150") == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["contact_sheet.png", "p1.png", "p2.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert [row["image"] for row in summary["images"]] == ["p1", "p2"]
    assert 'src="p3.png"' not in (out / "index.html").read_text()
    panel = read(out / "p1.png")
    assert panel.shape == (100, 2 * 150 + GAP, 3)
    expected = np.asarray(Image.fromarray(originals["p1"]).resize((150, 100), Image.Resampling.LANCZOS))
    assert np.array_equal(panel[:, :150], expected)
    assert (summary["images"][0]["width"], summary["images"][0]["height"]) == (150, 100)

    assert gallery(src, tmp_path / "all", "--model", f"tiny={tiny_model_dir}", "--n", "0", "--max-side", "150") == 0
    assert len(json.loads((tmp_path / "all" / "summary.json").read_text())["images"]) == 3


def test_two_models_give_three_columns_in_order(photos, tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    assert gallery(photos, out, "--model", f"first={tiny_model_dir}", "--model", f"second={tiny_model_dir}") == 0
    height, width = SIZES["b_rain"]
    panel = read(out / "b_rain.png")
    assert panel.shape == (height, 3 * width + 2 * GAP, 3)
    assert np.array_equal(panel[:, width + GAP: 2 * width + GAP], panel[:, 2 * width + 2 * GAP:])  # same model twice
    summary = json.loads((out / "summary.json").read_text())
    assert summary["columns"] == ["input", "first", "second"]
    assert list(summary["mean_niqe"]) == ["input", "first", "second"]
    assert "→ first " in (out / "index.html").read_text()
    assert "→ second " in (out / "index.html").read_text()


def test_without_model_uses_the_bundled_model_named_derain(photos, tmp_path, tiny_model_dir, monkeypatch):
    from derain import api

    monkeypatch.setattr(api, "bundled_model_dir", lambda: Path(tiny_model_dir))
    assert gallery(photos, tmp_path / "out", "--n", "1") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["columns"] == ["input", "derain"]
    assert summary["models"] == {"derain": "bundled model"}
    height, width = SIZES["a_rain"]
    panel = read(tmp_path / "out" / "a_rain.png")
    source = read(photos / "a_rain.png")
    tiny = derain.load(tiny_model_dir, device="cpu")(source)
    assert np.abs(panel[:, width + GAP:].astype(int) - tiny.astype(int)).max() <= 1


def test_a_corrupt_file_is_reported_and_the_others_are_written(photos, tmp_path, tiny_model_dir, capsys):
    (photos / "bad.jpg").write_text("this is not a photo")
    out = tmp_path / "out"
    assert gallery(photos, out, "--model", f"tiny={tiny_model_dir}") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"derain: error: {photos / 'bad.jpg'}: ")
    for name in SIZES:
        assert (out / f"{name}.png").is_file()
    assert not (out / "bad.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [row["image"] for row in summary["images"]] == list(SIZES)
    assert len(summary["failed"]) == 1 and "bad.jpg" in summary["failed"][0]
    assert "bad" not in (out / "index.html").read_text().split("<figure>", 1)[1]


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, "folder not found"),
    (lambda d: d.mkdir(), "no image files"),
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("x")), "no image files"),
])
def test_missing_or_empty_input_dir_is_a_one_line_error(tmp_path, tiny_model_dir, capsys, setup, words):
    src = tmp_path / "src"
    setup(src)
    assert gallery(src, tmp_path / "out", "--model", f"tiny={tiny_model_dir}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("derain: error: ") and words in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, words", [("nonsense", "expected NAME=PATH"), ("input=x", "taken by the input")])
def test_bad_model_options_are_one_line_errors(photos, tmp_path, capsys, spec, words):
    assert gallery(photos, tmp_path / "out", "--model", spec) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_clashing_panel_names_are_reported_not_overwritten(photos, tmp_path, tiny_model_dir, capsys):
    Image.fromarray(rainy_photo(100, 100, 5)).save(photos / "a_rain.jpg")  # same stem as a_rain.png
    Image.fromarray(rainy_photo(100, 100, 6)).save(photos / "contact_sheet.png")
    out = tmp_path / "out"
    assert gallery(photos, out, "--model", f"tiny={tiny_model_dir}") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"derain: error: {photos / 'a_rain.png'}: its panel")  # a_rain.jpg sorts first
    assert err[1].startswith(f"derain: error: {photos / 'contact_sheet.png'}: ")
    assert read(out / "a_rain.png").shape[0] == 100  # the panel of a_rain.jpg, not overwritten
    assert read(out / "contact_sheet.png").shape[1] == 1200


def test_crop_keeps_full_resolution_and_diff_shows_the_change(tmp_path, tiny_model_dir):
    src = tmp_path / "big"
    src.mkdir()
    original = rainy_photo(280, 420, 0)
    Image.fromarray(original).save(src / "p1.png")
    out = tmp_path / "out"
    assert gallery(src, out, "--model", f"tiny={tiny_model_dir}", "--crop", "96", "--diff") == 0
    panel = read(out / "p1.png")
    assert panel.shape == (96, 3 * 96 + 2 * GAP, 3)
    assert np.array_equal(panel[:, :96], original[92:188, 162:258])  # the central window, 100%
    derained = panel[:, 96 + GAP: 2 * 96 + GAP].astype(int)
    expected = np.clip(np.abs(derained - panel[:, :96].astype(int)) * 4, 0, 255)
    assert np.array_equal(panel[:, 2 * 96 + 2 * GAP:], expected)
    assert gallery(src, tmp_path / "bad", "--model", f"tiny={tiny_model_dir}", "--crop", "-1") == 2
