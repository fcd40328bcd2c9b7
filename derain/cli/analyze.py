"""`derain analyze`: how far apart are real and synthetic rain? The study of the paper's Fig. 2."""
from __future__ import annotations

from pathlib import Path

from derain.errors import DerainError

FEATURES_DESCRIPTION = ("per image, the 36 NIQE features (18 MSCN statistics at two scales) averaged "
                        "over its 96x96 patches, standardised per feature over all images")


def register(sub) -> None:
    p = sub.add_parser(
        "analyze", help="NIQE histograms, t-SNE and KS tests of named image sets (paper Fig. 2)",
        description="Compare named image sets, e.g. real=DIR linear=DIR camera=DIR clean=DIR: NIQE "
                    "histograms per set, a t-SNE of per-image NIQE features, and mean, std and the "
                    "two-sample KS statistic of each set against the set named 'real' (else the first).")
    p.add_argument("sets", nargs="+", metavar="NAME=DIR", help="a named folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the figures and summary.json")
    p.add_argument("--max-images", type=int, metavar="N", help="use the first N images of each set (sorted)")
    p.add_argument("--niqe-params", metavar="FILE",
                   help="NIQE pristine model: modelparameters.mat or an npz [default: bundled]")
    p.add_argument("--seed", type=int, default=0, help="t-SNE random seed [default: 0]")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from derain import evaluation as ev
    from derain.data import list_images

    folders = ev.parse_named(args.sets, "analyze")
    if args.max_images is not None and args.max_images < 1:
        raise DerainError(f"--max-images {args.max_images}: must be at least 1")
    reference = "real" if "real" in folders else next(iter(folders))
    niqe_model = ev.load_niqe_model(args.niqe_params)

    rows, scores, features = [], {}, {}
    for name, folder in folders.items():
        paths = list_images(folder)[: args.max_images]
        if not paths:
            raise DerainError(f"{folder}: no images")
        profiles = [ev.niqe_profile(path, niqe_model) for path in ev.progress(paths, name)]
        scores[name] = [score for score, _ in profiles]
        features[name] = np.stack([feature for _, feature in profiles])
        rows += [{"set": name, "image": str(path), "niqe": score} for path, score in zip(paths, scores[name])]

    out = args.output
    summary = {
        "reference": reference,
        "niqe": f"{ev.NIQE_DESCRIPTION}; pristine model: {args.niqe_params or 'bundled'}",
        "tsne_features": FEATURES_DESCRIPTION,
        "sets": ev.set_statistics(scores, reference),
    }
    ev.write_csv(out / "niqe_scores.csv", rows)
    ev.write_json(out / "summary.json", summary)
    _save_figure(out / "niqe_histograms.png", _histograms(scores))
    _save_figure(out / "tsne.png", _tsne_scatter(features, args.seed))
    _print_summary(summary, out)
    return 0


def _histograms(scores: dict[str, list[float]]):
    """One panel per set on shared bins, like the paper's Fig. 2 (b)-(e)."""
    import numpy as np
    from matplotlib.figure import Figure

    bins = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=20)
    fig = Figure(figsize=(3.2 * len(scores), 2.8), layout="constrained")
    axes = fig.subplots(1, len(scores), sharex=True, squeeze=False)[0]
    for ax, (name, values) in zip(axes, scores.items()):
        ax.hist(values, bins=bins, color="tab:blue")
        ax.axvline(np.mean(values), color="tab:red", linestyle="--", label=f"mean {np.mean(values):.2f}")
        ax.set(title=f"{name} (n={len(values)})", xlabel="NIQE (lower is better)", ylabel="images")
        ax.legend(fontsize="small")
    return fig


def _tsne_scatter(features: dict, seed: int):
    """2-D t-SNE of the standardised per-image NIQE features, coloured by set."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    stacked = np.concatenate(list(features.values()))
    standardised = (stacked - stacked.mean(0)) / (stacked.std(0) + 1e-12)
    perplexity = min(30.0, max(1.0, (len(stacked) - 1) / 3))  # sklearn needs perplexity < samples
    embedded = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(standardised)
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    start = 0
    for name, block in features.items():
        ax.scatter(*embedded[start:start + len(block)].T, s=12, label=name)
        start += len(block)
    ax.set(title="t-SNE of per-image NIQE features", xticks=[], yticks=[])
    ax.legend()
    return fig


def _save_figure(path: Path, fig) -> None:
    from derain.evaluation import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)  # a bare Figure renders with the Agg canvas


def _print_summary(summary: dict, out: Path) -> None:
    print(f"derain analyze: NIQE per set (KS against '{summary['reference']}'); {summary['niqe']}")
    for name, s in summary["sets"].items():
        ks = f"  KS {s['ks_statistic']:.3f} (p={s['ks_pvalue']:.2g})" if "ks_statistic" in s else ""
        print(f"  {name:<12} n={s['images']:<4} mean {s['niqe_mean']:.3f}  std {s['niqe_std']:.3f}{ks}")
    print(f"wrote {out}/summary.json, niqe_scores.csv, niqe_histograms.png, tsne.png")
