"""Scoring loops and report writers shared by `derain eval`, `derain compare` and `derain analyze`.

A scoring loop yields one row per image: ``{"image": name, "<metric>": value, ...}``.
Reports (CSV, JSON, markdown, PNG) are written atomically: a temporary file in the target
folder, then ``os.replace``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from derain.atomic import atomic_path
from derain.errors import DerainError

FULL_REFERENCE = ("psnr", "ssim")
NO_REFERENCE = ("niqe",)
PROTOCOL_DESCRIPTIONS = {
    "y": "Y channel of MATLAB rgb2ycbcr (limited range, rounded to uint8), no border crop, "
         "SSIM of Wang et al. 2004 over the 'valid' region (the deraining papers' MATLAB protocol)",
    "rgb": "RGB channels, no border crop; PSNR over all channels, SSIM averaged over channels",
}
NIQE_DESCRIPTION = "NIQE (lower is better) on MATLAB rgb2gray luminance, 96x96 patches"
_DECIMALS = {"psnr": 2, "ssim": 4, "niqe": 4, "shift": 2}

Model = Callable[[np.ndarray], np.ndarray]  # uint8 HxWx3 in, uint8 HxWx3 out
Predictor = Callable[[object, np.ndarray], np.ndarray]  # (pair, rainy uint8) -> prediction uint8


def parse_metrics(text: str) -> list[str]:
    """``"psnr,ssim"`` -> ``["psnr", "ssim"]``, refusing unknown names."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FULL_REFERENCE + NO_REFERENCE]
    if unknown or not names:
        raise DerainError(f"--metrics {text!r}: choose from {', '.join(FULL_REFERENCE + NO_REFERENCE)}")
    return names


def parse_named(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}`` for options such as ``--models NAME=DIR``."""
    named: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DerainError(f"{option} {item!r}: expected NAME=PATH")
        if name in named:
            raise DerainError(f"{option} {item!r}: the name {name!r} is given twice")
        named[name] = value
    return named


def load_niqe_model(params: str | None):
    """The NIQE pristine model from ``--niqe-params`` (.mat or .npz), or the bundled one."""
    from derain.metrics import bundled_model, load_niqe_params

    return load_niqe_params(params) if params else bundled_model()


def niqe_score(image: np.ndarray, niqe_model, where: str) -> float:
    try:
        return niqe_model.score(image)
    except ValueError as exc:  # image smaller than one patch
        raise DerainError(f"{where}: {exc}") from None


def score_image(pred: np.ndarray, clean: np.ndarray, metrics: list[str], protocol: str,
                niqe_model, where: str) -> dict[str, float]:
    """The requested metrics of one prediction; NIQE scores the prediction alone."""
    from derain.metrics import psnr, ssim

    if pred.shape != clean.shape:
        raise DerainError(f"{where}: size {pred.shape[1]}x{pred.shape[0]} differs from "
                          f"its clean image ({clean.shape[1]}x{clean.shape[0]})")
    functions = {
        "psnr": lambda: psnr(pred, clean, protocol),
        "ssim": lambda: ssim(pred, clean, protocol),
        "niqe": lambda: niqe_score(pred, niqe_model, where),
    }
    return {name: functions[name]() for name in metrics}


def run_model(model: Model, image: np.ndarray, name: str, save_dir: Path | None) -> np.ndarray:
    """The model's uint8 output for one image, written to ``save_dir/<name>.png`` if asked."""
    from derain.imageio import write_image

    output = model(image)
    if save_dir is not None:
        write_image(save_dir / f"{name}.png", output)
    return output


def progress(items: list, what: str) -> Iterator:
    """A progress bar on terminals; in logs, a line every few seconds (derain.console)."""
    from derain.console import progress_bar

    return iter(progress_bar(items, desc=what, unit="img", disable=None, leave=False))


def score_pairs(pairs: list, metrics: list[str], protocol: str, predict: Predictor | None = None,
                niqe_model=None, with_input: bool = False) -> list[dict]:
    """Score a paired dataset: the predictions, or the rainy inputs themselves without ``predict``.
    ``with_input`` adds each rainy input's PSNR as ``psnr_input`` (see `worse_than_input`), and the mean
    brightness shift against the clean image, in grey levels of Y, of the prediction and of the input."""
    from derain.data import load_pair_uint8
    from derain.metrics import brightness

    rows = []
    for pair in progress(pairs, "scoring"):
        rainy, clean = load_pair_uint8(pair)
        pred = rainy if predict is None else predict(pair, rainy)
        row = {"image": pair.name, **score_image(pred, clean, metrics, protocol, niqe_model, str(pair.rainy))}
        if with_input:
            row["psnr_input"] = score_image(rainy, clean, ["psnr"], protocol, None, str(pair.rainy))["psnr"]
            clean_level = brightness(clean)
            row["shift"], row["shift_input"] = brightness(pred) - clean_level, brightness(rainy) - clean_level
        rows.append(row)
    return rows


def worse_than_input(rows: list[dict]) -> int:
    """How many outputs score a lower PSNR than their rainy input (rows of `score_pairs(with_input=True)`)."""
    return sum(row["psnr"] < row["psnr_input"] for row in rows)


def model_predictor(model: Model, save_dir: Path | None = None) -> Predictor:
    """Run ``model`` on each rainy input (saving the outputs to ``save_dir`` if given)."""
    return lambda pair, rainy: run_model(model, rainy, pair.name, save_dir)


def folder_predictor(folder: str | Path, pairs: list) -> Predictor:
    """Read each pair's prediction from ``folder``, a file named like the pair (any image extension)."""
    from derain.imageio import read_image_uint8

    from derain.console import some_names

    index = index_by_stem(folder)
    missing = [pair.name for pair in pairs if pair.name not in index]
    if missing:
        raise DerainError(f"{folder}: no prediction for {len(missing)} image(s): {some_names(missing)}")
    return lambda pair, rainy: read_image_uint8(index[pair.name])


def match_by_stem(pred_dir: str | Path, clean_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, prediction, clean) triples whose files share a stem (relative path without extension).
    A clean image without a prediction is an error (the scores would cover part of the set); a
    prediction without a clean image is left out with a warning. Both name the unmatched files."""
    from derain.console import some_names, warn

    preds, cleans = index_by_stem(pred_dir), index_by_stem(clean_dir)
    no_prediction, no_clean = sorted(set(cleans) - set(preds)), sorted(set(preds) - set(cleans))
    extra = (f"{len(no_clean)} prediction(s) have no clean image in {clean_dir}: {some_names(no_clean)}"
             if no_clean else "")
    if no_prediction:
        raise DerainError(f"{pred_dir}: no prediction for {len(no_prediction)} clean image(s): "
                          f"{some_names(no_prediction)}{'; ' + extra if extra else ''} "
                          "(files are matched by path without extension)")
    if no_clean:
        warn(f"{pred_dir}: scoring {len(cleans)} of {len(preds)} predictions; {extra}")
    return [(name, preds[name], cleans[name]) for name in sorted(cleans)]


def index_by_stem(folder: str | Path) -> dict[str, Path]:
    """Images under ``folder`` by relative path without extension (the file stem in a flat folder)."""
    from derain.data import list_images

    folder = Path(folder)
    index: dict[str, Path] = {}
    for path in list_images(folder):
        stem = path.relative_to(folder).with_suffix("").as_posix()
        if stem in index:
            raise DerainError(f"{path}: same stem as {index[stem]}")
        index[stem] = path
    if not index:
        raise DerainError(f"{folder}: no images")
    return index


def score_predictions(matches: list[tuple[str, Path, Path]], metrics: list[str], protocol: str,
                      niqe_model=None) -> list[dict]:
    """Score existing predictions against their clean images."""
    from derain.imageio import read_image_uint8

    return [
        {"image": name, **score_image(read_image_uint8(pred), read_image_uint8(clean), metrics, protocol,
                                      niqe_model, str(pred))}
        for name, pred, clean in progress(matches, "scoring")
    ]


def score_unpaired(folder: str | Path, niqe_model, model: Model | None = None,
                   save_dir: Path | None = None) -> list[dict]:
    """NIQE of unpaired (real) rainy images, and of the model's outputs when a model is given."""
    from derain.data import list_images
    from derain.imageio import read_image_uint8

    folder = Path(folder)
    rows = []
    for path in progress(list_images(folder), "scoring"):
        name = path.relative_to(folder).with_suffix("").as_posix()
        rainy = read_image_uint8(path)
        row = {"image": name, "niqe_input": niqe_score(rainy, niqe_model, str(path))}
        if model is not None:
            row["niqe_output"] = niqe_score(run_model(model, rainy, name, save_dir), niqe_model, str(path))
        rows.append(row)
    return rows


def niqe_profile(path: Path, niqe_model) -> tuple[float, np.ndarray]:
    """NIQE of one image and its 36 NIQE features averaged over patches (its t-SNE descriptor)."""
    from derain.imageio import read_image_uint8
    from derain.metrics.niqe import niqe_features, to_gray

    try:
        features, _ = niqe_features(to_gray(read_image_uint8(path)))
    except ValueError as exc:
        raise DerainError(f"{path}: {exc}") from None
    return niqe_model.distance(features), np.nanmean(features, axis=0)


def set_statistics(scores: dict[str, list[float]], reference: str) -> dict[str, dict]:
    """Mean, std and median NIQE of each set, and the two-sample KS test against ``reference``."""
    from scipy.stats import ks_2samp

    stats = {}
    for name, values in scores.items():
        entry = {
            "images": len(values),
            "niqe_mean": float(np.mean(values)),
            "niqe_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "niqe_median": float(np.median(values)),
        }
        if name != reference:
            test = ks_2samp(values, scores[reference])
            entry["ks_statistic"], entry["ks_pvalue"] = float(test.statistic), float(test.pvalue)
        stats[name] = entry
    return stats


def mean_scores(rows: list[dict]) -> dict[str, float]:
    """Per-metric means over images (PSNR is averaged per image, as the MATLAB scripts do, an identical
    pair's inf counted as derain.metrics.PSNR_CAP_DB)."""
    from derain.metrics import mean_psnr

    columns = [key for key in rows[0] if key != "image"] if rows else []
    values = {key: [row[key] for row in rows] for key in columns}
    return {key: mean_psnr(v) if key.startswith("psnr") else float(np.mean(v)) for key, v in values.items()}


def format_score(metric: str, value: float) -> str:
    """A score with the decimals papers use (``niqe_input`` formats like ``niqe``)."""
    return f"{value:.{_DECIMALS.get(metric.split('_')[0], 4)}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compare_markdown(summaries: dict[str, dict[str, dict[str, float]]], protocol: str) -> str:
    """Models x datasets table of ``PSNR / SSIM`` cells, the best of each column in bold."""
    models = list(summaries)
    datasets = list(next(iter(summaries.values()))) if summaries else []
    best = {
        (data, metric): max(summaries[model][data][metric] for model in models)
        for data in datasets for metric in FULL_REFERENCE
    }

    def cell(model: str, data: str) -> str:
        parts = []
        for metric in FULL_REFERENCE:
            value = summaries[model][data][metric]
            text = format_score(metric, value)
            parts.append(f"**{text}**" if value == best[data, metric] else text)
        return " / ".join(parts)

    table = markdown_table(["model"] + datasets, [[model] + [cell(model, d) for d in datasets] for model in models])
    return f"PSNR (dB) / SSIM, protocol `{protocol}`: {PROTOCOL_DESCRIPTIONS[protocol]}.\n\n{table}"


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    """JSON with non-finite numbers (an identical pair's PSNR) written as the strings "inf"/"nan"."""
    return write_text(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(data):
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["image"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())
