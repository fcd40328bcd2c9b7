"""`derain export`: onnxruntime agrees with PyTorch at dynamic sizes."""
import numpy as np
import pytest
import torch

from derain.archs import create_model
from derain.config import load_model_config
from derain.cli import main
from derain.export import GridPadded
from derain.hub import from_pretrained, save_pretrained

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the [onnx] extra")
pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript (the [onnx] extra)")


@pytest.fixture(scope="module", params=[(0, 0, False, 0.0, 0.0), (4, 4, True, 0.05, 0.0), (4, 0, True, 0.05, 0.02)],
                ids=["tiny", "tiny+detail+context+darken_only+shrink", "tiny+detail+darken_only+shrink_streaks"])
def exported(tmp_path_factory, request):
    """A tiny model (plain, and with the detail path and its context branch, darken_only and shrink, and with
    a threshold per pixel) with large random weights (so mistakes show), exported through the CLI."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    detail, context, darken, shrink, streaks = request.param
    net = create_model({**load_model_config("tiny").to_dict(), "detail_dim": detail, "context_dim": context,
                        "darken_only": darken, "shrink": shrink, "shrink_streaks": streaks}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    save_pretrained(net, root / "model")
    assert main(["export", str(root / "model"), "--onnx", str(root / "m.onnx")]) == 0
    session = ort.InferenceSession(str(root / "m.onnx"), providers=["CPUExecutionProvider"])
    return from_pretrained(root / "model"), session


def threshold_for(net, x: torch.Tensor) -> torch.Tensor | None:
    """A threshold map with both values in patches, where the model takes one."""
    if not net.config.shrink_streaks:
        return None
    patches = torch.rand(x.shape[0], 1, *x.shape[2:]) > 0.5
    return torch.where(patches, net.config.shrink_streaks, net.config.shrink)


def run_onnx(session, x: torch.Tensor, threshold: torch.Tensor | None) -> np.ndarray:
    feeds = {"image": x.numpy()} | ({} if threshold is None else {"threshold": threshold.numpy()})
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("shape", [(1, 3, 48, 64), (2, 3, 32, 80), (1, 3, 16, 16)])
def test_onnx_matches_torch_on_the_window_grid(exported, shape):
    net, session = exported
    x = torch.rand(shape)
    threshold = threshold_for(net, x)
    with torch.no_grad():
        expected = net(x, threshold).numpy()
    assert np.abs(run_onnx(session, x, threshold) - expected).max() <= 1e-4


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (1, 3, 1, 1), (2, 3, 5, 130)])
def test_other_sizes_are_edge_padded_inside_the_graph(exported, shape):
    net, session = exported
    x = torch.rand(shape)
    threshold = threshold_for(net, x)
    out = run_onnx(session, x, threshold)
    with torch.no_grad():
        expected = GridPadded(net)(x, threshold).numpy()
    assert out.shape == shape and np.abs(out - expected).max() <= 1e-4


def test_export_without_a_bundled_model_names_the_fix(tmp_path, monkeypatch, capsys):
    from derain import api

    monkeypatch.setattr(api, "bundled_model_dir", lambda: tmp_path / "default_model")
    assert main(["export", "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "no bundled model is installed" in capsys.readouterr().err
