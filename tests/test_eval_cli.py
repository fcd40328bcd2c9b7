"""`derain eval`, `niqe-fit`, `analyze` and `compare` on tiny generated fixtures (and the shared test set)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import derain
from derain.cli import main
from derain.metrics import bundled_model, load_niqe_params, psnr, ssim

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def _photo(name: str) -> np.ndarray:
    return getattr(data, name)()[:200, :200]


def _rain(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    streaks = np.zeros(image.shape[:2])
    for row, col in zip(rng.integers(0, 180, 60), rng.integers(0, 200, 60)):
        streaks[row:row + 20, col] = 90
    return np.clip(image + streaks[..., None], 0, 255).astype(np.uint8)


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A paired dataset in the input/target layout: 4 crops of 200x200, with drawn streaks."""
    root = tmp_path_factory.mktemp("data")
    for seed, name in enumerate(NAMES):
        _save(root / "target" / f"{name}.png", _photo(name))
        _save(root / "input" / f"{name}.png", _rain(_photo(name), seed))
    return root


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _input_scores(protocol="y"):
    pairs = [(_rain(_photo(name), seed), _photo(name)) for seed, name in enumerate(NAMES)]
    return (np.mean([psnr(r, c, protocol) for r, c in pairs]), np.mean([ssim(r, c, protocol) for r, c in pairs]))


@pytest.fixture
def fake_model(monkeypatch):
    """Stand in for `derain.load`: a 'model' that brightens by one level, recording what it loaded."""
    loaded = []

    def load(spec=None, tta=False, scale="auto", strength=1.0, rain_angle="auto"):
        loaded.append((spec + " with tta" if tta else spec) + ("" if scale == "auto" else f" at scale {scale}")
                      + ("" if strength == 1 else f" at strength {strength:g}")
                      + ("" if rain_angle == "auto" else f" at rain angle {rain_angle:g}"))
        return lambda image: np.clip(image.astype(np.int16) + 1, 0, 255).astype(np.uint8)

    monkeypatch.setattr(derain, "load", load, raising=False)
    return loaded


@pytest.mark.skipif(not (SHARED_DATA / "paired" / "ddn_sirr_test20").is_dir(),
                    reason=f"shared data not found at {SHARED_DATA} (reference numbers need ddn_sirr_test20)")
def test_rainy_inputs_of_ddn_sirr_test20_give_the_reference_numbers(tmp_path):
    test20 = SHARED_DATA / "paired" / "ddn_sirr_test20"
    args = ["eval", "--pred", str(test20 / "rainy"), "--clean", str(test20 / "clean")]
    assert main(args + ["--out", str(tmp_path / "y")]) == 0
    assert main(args + ["--protocol", "rgb", "--metrics", "psnr", "--out", str(tmp_path / "rgb")]) == 0
    y, rgb = _read_json(tmp_path / "y" / "summary.json"), _read_json(tmp_path / "rgb" / "summary.json")
    assert (y["images"], y["protocol"], rgb["protocol"]) == (20, "y", "rgb")
    assert round(y["mean"]["psnr"], 2) == 22.29
    assert round(y["mean"]["ssim"], 4) == 0.8720
    assert round(rgb["mean"]["psnr"], 2) == 20.87


class TestEval:
    def test_scores_the_rainy_inputs_of_a_dataset(self, dataset, tmp_path, capsys):
        assert main(["eval", "--data", str(dataset), "--out", str(tmp_path)]) == 0
        rows = _read_csv(tmp_path / "scores.csv")
        summary = _read_json(tmp_path / "summary.json")
        assert [row["image"] for row in rows] == sorted(NAMES)
        assert summary["protocol"] == "y" and summary["mode"] == "paired"
        expected_psnr, expected_ssim = _input_scores()
        assert summary["mean"]["psnr"] == pytest.approx(expected_psnr)
        assert summary["mean"]["ssim"] == pytest.approx(expected_ssim)
        assert f"| 4 | {expected_psnr:.2f} | {expected_ssim:.4f} |" in (tmp_path / "summary.md").read_text()
        assert "protocol: y" in capsys.readouterr().out

    def test_rgb_protocol_and_niqe(self, dataset, tmp_path):
        assert main(["eval", "--data", str(dataset), "--protocol", "rgb", "--metrics", "psnr,niqe",
                     "--out", str(tmp_path)]) == 0
        summary = _read_json(tmp_path / "summary.json")
        assert summary["protocol"] == "rgb" and summary["niqe"] == "bundled pristine model"
        assert summary["mean"]["psnr"] == pytest.approx(_input_scores("rgb")[0])
        assert set(summary["mean"]) == {"psnr", "niqe"} and summary["mean"]["niqe"] > 0

    def test_predictions_match_clean_images_by_stem(self, dataset, tmp_path):
        (tmp_path / "pred").mkdir()
        for path in (dataset / "input").iterdir():  # the same images in another lossless format
            Image.open(path).save(tmp_path / "pred" / f"{path.stem}.bmp")
        assert main(["eval", "--pred", str(tmp_path / "pred"), "--clean", str(dataset / "target"),
                     "--out", str(tmp_path / "out")]) == 0
        assert _read_json(tmp_path / "out" / "summary.json")["mean"]["psnr"] == pytest.approx(_input_scores()[0])

    def test_a_missing_prediction_is_a_one_line_error(self, dataset, tmp_path, capsys):
        _save(tmp_path / "pred" / "astronaut.png", _photo("astronaut"))
        code = main(["eval", "--pred", str(tmp_path / "pred"), "--clean", str(dataset / "target"),
                     "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and "no prediction for 3 clean image(s): chelsea, coffee, rocket" in err
        assert err.count("\n") == 1

    def test_unmatched_files_are_named_both_ways(self, dataset, tmp_path, capsys):
        pred = tmp_path / "pred"
        for name in ["astronaut", "extra1", "extra2", "extra3", "extra4"]:
            _save(pred / f"{name}.png", _photo("astronaut"))
        clean = tmp_path / "clean"
        _save(clean / "astronaut.png", _photo("astronaut"))
        assert main(["eval", "--pred", str(pred), "--clean", str(clean), "--out", str(tmp_path / "out")]) == 0
        out, err = capsys.readouterr()
        assert err == (f"derain: warning: {pred}: scoring 1 of 5 predictions; 4 prediction(s) have no clean image "
                       f"in {clean}: extra1, extra2, extra3 and 1 more\n")
        assert "derain eval: 1 images" in out and _read_json(tmp_path / "out" / "summary.json")["images"] == 1

        _save(clean / "lonely.png", _photo("coffee"))
        assert main(["eval", "--pred", str(pred), "--clean", str(clean), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "no prediction for 1 clean image(s): lonely; 4 prediction(s) have no clean image" in err
        assert err.count("\n") == 1

    def test_runs_a_model_and_saves_its_outputs(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--model", "some-model", "--data", str(dataset), "--save", str(tmp_path / "pred"),
                     "--out", str(tmp_path / "out")]) == 0
        assert fake_model == ["some-model"]
        saved = np.asarray(Image.open(tmp_path / "pred" / "coffee.png"))
        np.testing.assert_array_equal(saved, np.clip(_rain(_photo("coffee"), 1).astype(int) + 1, 0, 255))
        summary = _read_json(tmp_path / "out" / "summary.json")
        assert summary["model"] == "some-model"
        assert summary["mean"]["psnr"] != pytest.approx(_input_scores()[0])
        # +1 everywhere adds error where rain left a pixel exact and where streaks were already too bright
        assert summary["mean"]["psnr_input"] == pytest.approx(_input_scores()[0])
        assert summary["worse_than_input"] == 4
        assert "Worse than the rainy input (PSNR): 4 of 4 images." in (tmp_path / "out" / "summary.md").read_text()

    def test_reports_the_brightness_shift_against_the_clean_image(self, dataset, tmp_path, fake_model):
        from skimage.color import rgb2ycbcr

        assert main(["eval", "--model", "m", "--data", str(dataset), "--out", str(tmp_path)]) == 0
        rows = {row["image"]: row for row in _read_csv(tmp_path / "scores.csv")}
        for seed, name in enumerate(NAMES):  # oracle: skimage's unrounded Y
            rain = rgb2ycbcr(_rain(_photo(name), seed))[..., 0].mean() - rgb2ycbcr(_photo(name))[..., 0].mean()
            assert float(rows[name]["shift_input"]) == pytest.approx(rain, abs=0.05)
            # +1 on R, G and B lifts Y by 219/255 levels, less where a channel was already 255
            lift = float(rows[name]["shift"]) - float(rows[name]["shift_input"])
            assert 0.75 < lift <= 219 / 255 + 0.05
        assert "`shift`: mean brightness of the output minus" in (tmp_path / "summary.md").read_text()

    def test_tta_loads_the_model_with_the_self_ensemble(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--model", "m", "--tta", "--data", str(dataset), "--out", str(tmp_path)]) == 0
        assert fake_model == ["m with tta"]

    def test_scale_reaches_the_model_and_the_summary(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--model", "m", "--scale", "2", "--data", str(dataset), "--out", str(tmp_path)]) == 0
        assert fake_model == ["m at scale 2"] and _read_json(tmp_path / "summary.json")["scale"] == "2"

    def test_strength_reaches_the_model_and_the_summary(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--model", "m", "--strength", "1.5", "--data", str(dataset), "--out", str(tmp_path)]) == 0
        assert fake_model == ["m at strength 1.5"] and _read_json(tmp_path / "summary.json")["strength"] == 1.5

    def test_rain_angle_reaches_the_model_and_the_summary(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--model", "m", "--data", str(dataset), "--out", str(tmp_path / "a")]) == 0
        assert main(["eval", "--model", "m", "--rain-angle", "0", "--data", str(dataset), "--out", str(tmp_path / "b")]) == 0
        assert fake_model == ["m", "m at rain angle 0"]
        assert _read_json(tmp_path / "a" / "summary.json")["rain_angle"] == "auto"
        assert _read_json(tmp_path / "b" / "summary.json")["rain_angle"] == 0

    def test_unpaired_rain_gets_niqe_of_input_and_output(self, dataset, tmp_path, fake_model):
        assert main(["eval", "--rainy", str(dataset / "input"), "--model", "m", "--out", str(tmp_path)]) == 0
        rows = _read_csv(tmp_path / "scores.csv")
        assert len(rows) == 4 and set(rows[0]) == {"image", "niqe_input", "niqe_output"}
        assert _read_json(tmp_path / "summary.json")["protocol"] is None

    @pytest.mark.parametrize("args, message", [
        (["--rainy", "{data}/input", "--metrics", "psnr"], "no ground truth"),
        (["--pred", "{data}/input"], "--pred needs --clean"),
        (["--data", "{data}", "--save", "x"], "--save writes model outputs"),
        (["--data", "{data}", "--tta"], "--tta runs a model"),
        (["--data", "{data}", "--scale", "2"], "--scale runs a model"),
        (["--data", "{data}", "--rain-angle", "0"], "--rain-angle runs a model"),
        (["--data", "{data}", "--metrics", "lpips"], "choose from psnr, ssim, niqe"),
        (["--data", "{data}/missing"], "folder not found"),
    ])
    def test_user_errors(self, dataset, tmp_path, capsys, args, message):
        args = [arg.format(data=dataset) for arg in args]
        assert main(["eval", *args, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err


class TestNiqeFit:
    def test_reproduces_the_bundled_model_with_its_documented_photos(self, tmp_path):
        photos = {name: getattr(data, name)() for name in
                  ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "grass", "gravel", "brick"]}
        photos["motorcycle_left"] = data.stereo_motorcycle()[0]
        for name, image in photos.items():
            _save(tmp_path / "photos" / f"{name}.png", image)
        assert main(["niqe-fit", str(tmp_path / "photos"), "-o", str(tmp_path / "model.npz")]) == 0
        fitted, bundled = load_niqe_params(tmp_path / "model.npz"), bundled_model()
        assert np.linalg.eigvalsh(fitted.cov).min() > 0
        np.testing.assert_allclose(fitted.mean, bundled.mean, rtol=1e-9)
        np.testing.assert_allclose(fitted.cov, bundled.cov, rtol=1e-9, atol=1e-15)
        assert len(np.load(tmp_path / "model.npz")["sources"]) == 10

    def test_names_an_image_too_small_for_a_patch(self, tmp_path, capsys):
        _save(tmp_path / "photos" / "tiny.png", _photo("coffee")[:50])
        assert main(["niqe-fit", str(tmp_path / "photos"), "-o", str(tmp_path / "model.npz")]) == 2
        assert "tiny.png: smaller than one 96x96 NIQE patch" in capsys.readouterr().err


def test_analyze_writes_histograms_tsne_and_ks_statistics(dataset, tmp_path):
    noisy = tmp_path / "noisy"
    rng = np.random.default_rng(0)
    for name in NAMES:
        _save(noisy / f"{name}.png", np.clip(_photo(name) + rng.normal(0, 25, (200, 200, 3)), 0, 255).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["analyze", f"clean={dataset / 'target'}", f"real={dataset / 'input'}", f"noisy={noisy}",
                 "-o", str(out), "--max-images", "3"]) == 0
    summary = _read_json(out / "summary.json")
    assert summary["reference"] == "real"
    assert list(summary["sets"]) == ["clean", "real", "noisy"]
    assert all(s["images"] == 3 for s in summary["sets"].values())
    assert "ks_statistic" not in summary["sets"]["real"]
    assert 0 <= summary["sets"]["clean"]["ks_statistic"] <= 1
    assert summary["sets"]["noisy"]["niqe_mean"] > summary["sets"]["clean"]["niqe_mean"]
    assert len(_read_csv(out / "niqe_scores.csv")) == 9
    for figure in ("niqe_histograms.png", "tsne.png"):
        assert Image.open(out / figure).format == "PNG"


class TestCompare:
    @pytest.fixture
    def predictions(self, dataset, tmp_path) -> dict[str, Path]:
        """Prediction folders per dataset: 'good' is the clean image lightly noised, 'poor' more so."""
        rng = np.random.default_rng(0)
        for model, noise in (("good", 2), ("poor", 12)):
            for data_name in ("a", "b"):
                for path in (dataset / "target").iterdir():
                    image = np.asarray(Image.open(path)) + rng.normal(0, noise, (200, 200, 3))
                    _save(tmp_path / model / data_name / path.name, np.clip(image, 0, 255).astype(np.uint8))
        return {model: tmp_path / model for model in ("good", "poor")}

    def test_table_of_models_by_datasets_with_best_in_bold(self, dataset, predictions, tmp_path):
        out = tmp_path / "out"
        assert main(["compare", "--models", f"poor={predictions['poor']}", f"good={predictions['good']}",
                     "--data", f"a={dataset}", f"b={dataset}", "--with-input", "-o", str(out)]) == 0
        report = _read_json(out / "compare.json")
        results = report["results"]
        assert list(results) == ["Input", "poor", "good"] and report["protocol"] == "y"
        assert results["Input"]["a"]["psnr"] == pytest.approx(_input_scores()[0])
        assert results["good"]["b"]["psnr"] > results["poor"]["b"]["psnr"] > results["Input"]["b"]["psnr"]
        table = (out / "compare.md").read_text()
        good_row = next(line for line in table.splitlines() if line.startswith("| good |"))
        poor_row = next(line for line in table.splitlines() if line.startswith("| poor |"))
        assert good_row.count("**") == 8 and "**" not in poor_row  # PSNR and SSIM bold in both columns
        assert len(_read_csv(out / "scores.csv")) == 3 * 2 * 4

    def test_models_are_loaded_and_run(self, dataset, tmp_path, fake_model):
        out = tmp_path / "out"
        assert main(["compare", "--models", "plus-one=spec", "--data", f"a={dataset}", "-o", str(out)]) == 0
        assert fake_model == ["spec"]
        assert "| plus-one |" in (out / "compare.md").read_text()



@pytest.mark.skipif(not hasattr(derain, "load"), reason="derain.load (the model API) is not available")
def test_eval_runs_a_real_model_directory(tmp_path):
    from derain.archs import create_model
    from derain.hub import save_pretrained

    model_dir = save_pretrained(create_model("tiny"), tmp_path / "model")
    for name in ("coffee", "chelsea"):
        _save(tmp_path / "data" / "target" / f"{name}.png", _photo(name)[:64, :64])
        _save(tmp_path / "data" / "input" / f"{name}.png", _rain(_photo(name), 0)[:64, :64])
    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "data"),
                 "--save", str(tmp_path / "pred"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["chelsea.png", "coffee.png"]
    assert _read_json(tmp_path / "out" / "summary.json")["model"] == str(model_dir)


def test_eval_and_compare_take_the_bundled_model_by_name(tmp_path, monkeypatch, tiny_model_dir):
    from derain import api

    monkeypatch.setattr(api, "bundled_model_dir", lambda: Path(tiny_model_dir))
    for name in ("coffee", "chelsea"):
        _save(tmp_path / "data" / "target" / f"{name}.png", _photo(name)[:64, :64])
        _save(tmp_path / "data" / "input" / f"{name}.png", _rain(_photo(name), 0)[:64, :64])
    assert main(["eval", "--model", "bundled", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "e")]) == 0
    assert main(["compare", "--models", "shipped=bundled", f"tiny={tiny_model_dir}", "--data",
                 f"d={tmp_path / 'data'}", "-o", str(tmp_path / "c")]) == 0
    results = _read_json(tmp_path / "c" / "compare.json")["results"]
    assert results["shipped"] == results["tiny"]
