"""Model directories round-trip, and `derain info` prints real counts."""
import json

import pytest
import torch

from derain.archs import create_model
from derain.cli import main
from derain.errors import DerainError
from derain.hub import from_pretrained, resolve_model, save_pretrained


def test_save_and_load_model_directory_round_trips(tmp_path):
    torch.manual_seed(0)
    net = create_model("tiny").eval()
    save_pretrained(net, tmp_path / "m", note="test")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path / "m")
    x = torch.rand(1, 3, 20, 30)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["note"] == "test"


def test_loading_a_broken_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DerainError, match="not a model directory"):
        from_pretrained(tmp_path)
    save_pretrained(create_model("tiny"), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(DerainError, match="cannot read weights"):
        from_pretrained(tmp_path)


def test_info_json_counts_parameters_and_flops(capsys):
    assert main(["info", "--config", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    net = create_model("tiny")
    assert report["params"] == sum(p.numel() for p in net.parameters())
    assert report["params_by_part"]["encoder"] == sum(p.numel() for p in net.encoder.parameters())
    # The MLP alone costs 2 linear layers × 2 FLOPs × dim × hidden per token and block.
    cfg = net.config
    tokens = (256 // cfg.patch_size) ** 2
    mlp_gflops = cfg.depth * tokens * 2 * 2 * cfg.dim * int(cfg.dim * cfg.mlp_ratio) / 1e9
    assert mlp_gflops < report["gflops_256"] < 20 * mlp_gflops


def test_info_rejects_unknown_preset(capsys):
    assert main(["info", "--config", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_atomic_writes_get_ordinary_permissions_and_leave_no_temp_on_failure(tmp_path):
    import os

    from derain.atomic import atomic_write

    umask = os.umask(0o022)
    try:
        save_pretrained(create_model("tiny"), tmp_path / "m")
    finally:
        os.umask(umask)
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o644

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.txt", fail)
    assert list(tmp_path.glob("*x.txt*")) == []


def test_model_names_resolve_to_model_directories(tmp_path, monkeypatch):
    from derain import api

    monkeypatch.setattr(api, "bundled_model_dir", lambda: tmp_path / "shipped")
    with pytest.raises(DerainError, match="no bundled model is installed"):
        resolve_model("bundled")
    save_pretrained(create_model("tiny"), tmp_path / "shipped")
    assert resolve_model(None) == resolve_model("bundled") == resolve_model("default") == tmp_path / "shipped"
    assert resolve_model(tmp_path / "shipped") == tmp_path / "shipped"

    run = tmp_path / "run"
    (run).mkdir()
    (run / "config.yaml").write_text("model: tiny\n")
    with pytest.raises(DerainError, match="a training run without a finished model"):
        resolve_model(run)
    save_pretrained(create_model("tiny"), run / "scratch_model")
    assert resolve_model(str(run)) == run / "scratch_model"  # V2 only
    save_pretrained(create_model("tiny"), run / "model")
    assert resolve_model(run) == run / "model"  # V1 first

    with pytest.raises(DerainError, match="missing: not found; name a model as bundled or default, a model "
                                          "directory or a training run directory"):
        resolve_model(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DerainError, match="plain: a folder that is neither a model directory"):
        resolve_model(tmp_path / "plain")
