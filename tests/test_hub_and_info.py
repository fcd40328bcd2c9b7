"""Model directories round-trip, and `derain info` prints real counts."""
import json

import pytest
import torch

from derain.archs import create_model
from derain.cli import main
from derain.errors import DerainError
from derain.hub import from_pretrained, save_pretrained


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
