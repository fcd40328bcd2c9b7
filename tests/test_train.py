"""`derain train`: every stage on tiny data, frozen teachers, bit-exact resume, DDP, config errors."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from PIL import Image
from safetensors.torch import load_file

from derain.archs import Encoder, create_model
from derain.cli import main
from derain.inference import streak_threshold
from derain.config import load_model_config
from derain.errors import DerainError
from derain.hub import from_pretrained, save_pretrained
from derain.losses import lowfreq_loss, rain_pixel_loss, recon_loss
from derain.data import CLEAR_LABEL
from derain.data.families import holdout
from derain.train import pipeline
from derain.train.config import STAGES, StageConfig, load_train_config, resolve_data
from derain.train.distributed import Dist
from derain.train.loop import Context, batch_stream, train_stage
from derain.train.pipeline import train
from derain.train.rundir import RunDir, RunLog, load_checkpoint
from derain.train.stages import Stage, build_stage, load_weights, stage_loss

REPO = Path(__file__).parents[1]
MODEL = {"dim": 8, "depth": 1, "num_heads": 2, "window_size": 4, "mlp_ratio": 2.0, "patch_size": 2,
         "local_reduction": 2, "se_window": 3, "spp_kernels": [3]}
CPU = Dist(torch.device("cpu"))


def smooth_image(rng, size=32):
    blocks = np.kron(rng.random((4, 4, 3)), np.ones((size // 4, size // 4, 1)))
    return np.clip(blocks + 0.05 * rng.standard_normal(blocks.shape), 0, 1)


def add_streaks(img, rng):
    out = img.copy()
    for _ in range(6):
        x, y = rng.integers(img.shape[1]), rng.integers(-8, img.shape[0])
        for t in range(10):
            if 0 <= y + t < img.shape[0] and x + t // 3 < img.shape[1]:
                out[y + t, x + t // 3] = np.minimum(out[y + t, x + t // 3] + 0.6, 1)
    return out


def save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 streaked "real rainy" and 6 clear 32×32 images, and 2 validation pairs."""
    root, rng = tmp_path_factory.mktemp("data"), np.random.default_rng(0)
    for i in range(6):
        save(root / "rainy" / f"{i}.png", add_streaks(smooth_image(rng), rng))
        save(root / "clear" / f"{i}.png", smooth_image(rng))
    for i in range(2):
        clean = smooth_image(rng)
        save(root / "val" / "clean" / f"{i}.png", clean)
        save(root / "val" / "rainy" / f"{i}.png", add_streaks(clean, rng))
    return root


def tiny_config(data, **stages):
    return {
        "model": MODEL, "device": "cpu", "seed": 0,
        "data": {"real_rainy": [str(data / "rainy")], "real_clear": [str(data / "clear")], "val": str(data / "val"),
                 "synth": {"clean": str(data / "clear"), "rain_model": "linear", "count": 8,
                           "params": {"brightness": [0.7, 0.8]}}},
        "train": {"iters": 8, "batch_size": 4, "crop": 16, "lr": 2e-3, "plateau_every": 2, "plateau_patience": 0,
                  "log_every": 2, "checkpoint_every": 3, "val_every": 4},
        "stages": {"finetune": {"ema": 0.5, "lr_encoder": 1e-3}, **stages},
    }


def log_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weight_files(run: Path) -> list[Path]:
    return sorted(p.relative_to(run) for p in run.rglob("*.safetensors") if "ckpt-" not in p.name)


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    train(tiny_config(data), out)
    return out


def test_recog_alone_validates(data, tmp_path):
    """`--stages recog` alone scores T_recog on data.val too (it once loaded data.val only for the
    restoration stages)."""
    out = tmp_path / "recog"
    train(tiny_config(data), out, stages=["recog"])
    assert [e["step"] for e in log_lines(out) if "val_balanced_accuracy" in e] == [4, 8]


def test_the_pipeline_writes_loadable_models_logs_and_checkpoints(finished_run):
    run = RunDir(finished_run)
    assert all(run.is_done(stage) for stage in STAGES)
    assert type(from_pretrained(finished_run / "model")).__name__ == "ImageNet"
    assert type(from_pretrained(finished_run / "scratch_model")).__name__ == "ImageNet"
    assert type(from_pretrained(finished_run / "recog" / "model")).__name__ == "RecogNet"
    from_pretrained(finished_run / "finetune" / "best")
    assert load_train_config(run.config_file).stages["finetune"].lr_encoder == 1e-3  # the resolved copy loads
    weights, state = load_checkpoint(run.stage_dir("finetune"))
    assert state["progress"]["step"] == 8 and any(k.startswith("ema.") for k in weights)
    assert list((finished_run / "tb").glob("*/events.out.tfevents.*"))
    validations = [e for e in log_lines(finished_run) if "val_psnr" in e]
    assert {(e["stage"], e["step"]) for e in validations} == {(s, k) for s in ("finetune", "scratch") for k in (4, 8)}
    assert all(10 < e["val_psnr"] < 60 for e in validations)
    recog = [e for e in log_lines(finished_run) if "val_balanced_accuracy" in e]
    assert [(e["stage"], e["step"]) for e in recog] == [("recog", 4), ("recog", 8)]
    best = json.loads((finished_run / "recog" / "best" / "config.json").read_text())
    assert best["val_balanced_accuracy"] == max(e["val_balanced_accuracy"] for e in recog)
    exported, chosen = (from_pretrained(finished_run / "recog" / d).state_dict() for d in ("model", "best"))
    assert all(torch.equal(exported[k], chosen[k]) for k in chosen)  # the teacher is the best validation


def test_recog_validation_is_the_balanced_accuracy_of_rainy_and_clean_photos(data, tmp_path):
    """A scripted T_recog that knows which images are rainy, wrong on a chosen set: 2 pairs plus a
    `none` pair (rainy = clean, counted as clean only) give 2 rainy and 3 clean images."""
    from derain.data import list_pairs
    from derain.train.validation import validate_recog

    val = tmp_path / "val"
    shutil.copytree(data / "val", val)
    shutil.copy(val / "clean" / "0.png", val / "clean" / "none.png")
    shutil.copy(val / "clean" / "0.png", val / "rainy" / "none.png")
    rainy = {np.asarray(Image.open(p)).tobytes() for p in (val / "rainy").glob("[01].png")}

    class Scripted(nn.Module):
        def __init__(self, wrong_on_clean: int):
            super().__init__()
            self.wrong_on_clean, self.clean_seen = wrong_on_clean, 0

        def forward(self, x):
            img = (x[0].permute(1, 2, 0) * 255).round().byte().numpy().tobytes()
            if img in rainy:
                return torch.tensor([0.0])
            self.clean_seen += 1
            return torch.tensor([0.0 if self.clean_seen <= self.wrong_on_clean else 1.0])

    pairs = list_pairs(val)
    perfect = validate_recog(Scripted(0), pairs, torch.device("cpu"))
    assert perfect == {"val_balanced_accuracy": 1.0, "val_rainy_accuracy": 1.0, "val_clear_accuracy": 1.0}
    one_wrong = validate_recog(Scripted(1), pairs, torch.device("cpu"))
    assert one_wrong["val_clear_accuracy"] == pytest.approx(2 / 3)
    assert one_wrong["val_balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_lowers_its_loss(finished_run, stage):
    losses = [e["loss"] for e in log_lines(finished_run) if e["stage"] == stage and "loss" in e]
    assert len(losses) == 4
    assert losses[-1] < losses[0]


def test_synthesis_parameters_from_the_config_reach_the_pairs(finished_run):
    meta = json.loads((finished_run / "data" / "synth-linear" / "meta.json").read_text())
    assert meta["params"] == {"brightness": [0.7, 0.8]}
    brightness = [layer["brightness"] for pair in meta["pairs"] for layer in pair["layers"]]
    assert len(meta["pairs"]) == 8 and all(0.7 <= b <= 0.8 for b in brightness)


def test_a_rerun_skips_completed_stages(finished_run, data):
    before = (finished_run / "metrics.jsonl").read_text()
    stamp = (finished_run / "model" / "model.safetensors").stat().st_mtime_ns
    train(tiny_config(data), finished_run)
    assert (finished_run / "metrics.jsonl").read_text() == before
    assert (finished_run / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_run_directory_refuses_a_changed_config(finished_run, data):
    config = tiny_config(data)
    config["stages"]["finetune"]["iters"] = 9
    with pytest.raises(DerainError, match=r"differs from this config at stages\.finetune\.iters \(8 there, 9 here\)"):
        train(config, finished_run)


def test_a_run_made_before_a_key_existed_still_matches_its_default(finished_run, data, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    stored = yaml.safe_load((old / "config.yaml").read_text())
    del stored["data"]["synth"]["negatives"], stored["stages"]["scratch"]["init"]
    (old / "config.yaml").write_text(yaml.safe_dump(stored))
    train(tiny_config(data), old)  # every stage is done: nothing to do, and no refusal
    config = tiny_config(data)
    config["data"]["synth"]["negatives"] = 2
    with pytest.raises(DerainError, match=r"at data\.synth\.negatives \(1 there, 2 here\)"):
        train(config, old)


def test_a_killed_run_resumes_to_the_same_weights_bit_for_bit(finished_run, data, tmp_path):
    out = tmp_path / "killed"
    train(tiny_config(data), out, stop_at=("finetune", 5))  # as if killed after step 5; checkpoint at 3
    assert RunDir(out).checkpoint_step("finetune") == 3 and not RunDir(out).is_done("finetune")
    with pytest.raises(DerainError, match="pass --resume"):
        train(tiny_config(data), out)
    train(tiny_config(data), out, resume=True)

    assert weight_files(out) == weight_files(finished_run)
    for name in weight_files(out):
        a, b = load_file(out / name), load_file(finished_run / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    drop_speed = lambda lines: [{k: v for k, v in e.items() if k != "it_s"} for e in lines]  # noqa: E731
    assert drop_speed(log_lines(out)) == drop_speed(log_lines(finished_run))


def test_a_killed_run_may_resume_to_more_iterations_but_not_fewer(data, tmp_path):
    """An unfinished stage's iters may be raised on --resume (it trains on to the new count, and the run's
    config says so); lowering it, or raising a finished stage's, is still refused."""
    out = tmp_path / "longer"
    config = tiny_config(data, scratch={"val_every": 0})
    train(config, out, stages=["scratch"], stop_at=("scratch", 5))  # killed after step 5; checkpoint at 3
    fewer = tiny_config(data, scratch={"val_every": 0, "iters": 2})
    with pytest.raises(DerainError, match=r"stages\.scratch\.iters \(8 there, 2 here\)"):
        train(fewer, out, stages=["scratch"], resume=True)
    longer = tiny_config(data, scratch={"val_every": 0, "iters": 11})
    train(longer, out, stages=["scratch"], resume=True)
    assert RunDir(out).is_done("scratch")
    assert yaml.safe_load((out / "config.yaml").read_text())["stages"]["scratch"]["iters"] == 11
    assert max(e["step"] for e in log_lines(out) if e.get("stage") == "scratch") == 11
    more = tiny_config(data, scratch={"val_every": 0, "iters": 12})
    with pytest.raises(DerainError, match=r"stages\.scratch\.iters \(11 there, 12 here\)"):
        train(more, out, stages=["scratch"], resume=True)


def test_teachers_stay_frozen_while_a_narrower_student_learns(finished_run, data, tmp_path, monkeypatch):
    out = tmp_path / "narrow"
    for teacher in ("recog", "recon"):  # reuse the finished teachers, as docs/training.md describes
        shutil.copytree(finished_run / teacher, out / teacher)
    built = {}

    def spy(name, *args):
        built[name] = stage = build_stage(name, *args)
        teachers = stage.module.teachers.items()
        built["before"] = {t: {k: v.clone() for k, v in net.state_dict().items()} for t, net in teachers}
        return stage

    monkeypatch.setattr(pipeline, "build_stage", spy)
    config = {**tiny_config(data), "student": {"dim": 4}}
    train(config, out, stages=["distill"])

    module = built["distill"].module
    assert all(isinstance(module.project[t], nn.Conv2d) for t in ("recog", "recon"))  # 4 -> 8 channels
    assert not any(k.startswith("teachers") for k in module.state_dict())
    for teacher, net in module.teachers.items():
        assert not any(p.requires_grad for p in net.parameters())
        after = net.state_dict()
        assert all(torch.equal(after[k], v) for k, v in built["before"][teacher].items()), teacher
    student = Encoder(load_model_config({**MODEL, "dim": 4}))
    student.load_state_dict(load_file(out / "distill" / "student.safetensors"))  # no projections inside


def ctx_for(dist: Dist, run=None) -> Context:
    return Context(run=run, dist=dist, log=RunLog(run, enabled=run is not None), seed=0, amp=False, workers=0,
                   val_pairs=[])


class Numbers(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (torch.tensor([float(i)]),)

    def set_epoch(self, epoch):
        pass


def test_ranks_split_each_global_batch_and_resume_mid_stream():
    dataset = Numbers(10)  # 2 batches of 4 per epoch; the last 2 samples wait for the next shuffle
    stream = batch_stream(dataset, 4, 0, ctx_for(CPU))
    whole = [next(stream)[0] for _ in range(5)]
    ranks = [batch_stream(dataset, 4, 0, ctx_for(Dist(CPU.device, rank, 2))) for rank in (0, 1)]
    for batch in whole:
        assert torch.equal(batch, torch.cat([next(r)[0] for r in ranks]))
    assert not torch.equal(whole[0], whole[2])  # a new permutation each epoch
    assert torch.equal(next(batch_stream(dataset, 4, 3, ctx_for(CPU)))[0], whole[3])


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    config = tiny_config(data)
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(config))
    train(config, tmp_path / "one", stages=["recon"])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "derain", "train", str(config_file), "--out", str(tmp_path / "two"), "--stages", "recon"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = (load_file(tmp_path / run / "recon" / "model" / "model.safetensors") for run in ("one", "two"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4)


class ExplodesOnCall(nn.Module):
    def __init__(self, call):
        super().__init__()
        self.weight, self.calls, self.explode_at = nn.Parameter(torch.ones(1)), 0, call

    def forward(self, batch):
        self.calls += 1
        loss = (self.weight * batch[0]).pow(2).mean()
        return {"loss": loss * float("nan") if self.calls >= self.explode_at else loss}


def test_a_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    module = ExplodesOnCall(call=5)
    stage = Stage("toy", module, Numbers(8), [{"params": list(module.parameters()), "lr": 0.1}], lambda m: None)
    run = RunDir(tmp_path)
    with pytest.raises(DerainError, match=r"at step 5.*Last good checkpoint: step 4"):
        train_stage(stage, StageConfig(iters=10, batch_size=2, checkpoint_every=2), ctx_for(CPU, run))
    weights, state = load_checkpoint(run.stage_dir("toy"))
    assert state["progress"]["step"] == 4 and torch.isfinite(weights["weight"]).all()
    assert not run.is_done("toy")



class RecordsAutocast(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight, self.dtypes = nn.Parameter(torch.ones(4, 1)), []

    def forward(self, batch):
        out = batch[0] @ self.weight.T  # a matmul: what autocast casts
        self.dtypes.append(out.dtype)
        return {"loss": out.float().pow(2).mean()}


@pytest.mark.parametrize("cpu_bf16, has_bf16, expected", [
    (False, True, torch.float32), (True, True, torch.bfloat16), (True, False, torch.float32)])
def test_cpu_bf16_trains_under_bf16_autocast_only_where_asked_and_the_cpu_has_it(monkeypatch, capsys, tmp_path,
                                                                                  cpu_bf16, has_bf16, expected):
    from derain.train import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: has_bf16)
    module = RecordsAutocast()
    stage = Stage("toy", module, Numbers(8), [{"params": list(module.parameters()), "lr": 0.1}], lambda m: None)
    ctx = dataclasses.replace(ctx_for(CPU, RunDir(tmp_path)), amp=True, cpu_bf16=cpu_bf16)
    train_stage(stage, StageConfig(iters=2, batch_size=2), ctx)
    assert module.dtypes == [expected, expected] and module.weight.dtype == torch.float32
    assert ("no bf16 instructions" in capsys.readouterr().out) == (cpu_bf16 and not has_bf16)
    assert not loop.autocast_bf16(torch.device("cuda"), False, True)  # amp alone decides on CUDA


def write_config(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("change, stages, message", [
    (lambda c: c["stages"]["finetune"].update(lr_enc=1.0), None, "stages.finetune.lr_enc: unknown key"),
    (lambda c: c.update(epochs=3), None, "epochs: unknown key"),
    (lambda c: c["train"].update(iters="many"), None, "train.iters: expected int"),
    (lambda c: c["data"].update(real_rainy=["/no/such/folder"]), None, "data.real_rainy: /no/such/folder: not found"),
    (lambda c: None, ["distill"], "stage distill needs stage recog"),
    (lambda c: c["data"]["synth"]["params"].update(densty=[0, 1]), None, "unknown linear rain parameter(s) ['densty']"),
    (lambda c: c["stages"]["finetune"].update(lowfreq=-1), None, "lowfreq must be non-negative"),
    (lambda c: c["stages"]["finetune"].update(shrink_jitter=1), None, "shrink_jitter must be in [0, 1)"),
    (lambda c: c["stages"]["finetune"].update(shrink_jitter=0.5), None, "shrink_jitter: set, but model.shrink is 0"),
    (lambda c: c["stages"]["finetune"].update(streak_map=True), None, "streak_map: set, but model.shrink_streaks is 0"),
    (lambda c: c["stages"].setdefault("recon", {}).update(lowfreq=1), None, "stages.recon.lowfreq: unknown key"),
])
def test_config_errors_are_one_line_before_any_work(data, tmp_path, capsys, change, stages, message):
    config = tiny_config(data)
    change(config)
    out = tmp_path / "run"
    argv = ["train", write_config(tmp_path / "c.yaml", config), "--out", str(out)]
    assert main(argv + (["--stages", *stages] if stages else [])) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_set_overrides_reach_the_config_and_bad_ones_are_one_line(data, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_config(data))
    cfg = load_train_config(config, overrides=["stages.distill.teachers=[recog]", "train.iters=7",
                                               "data.synth.params.angle=[-20, 20]", "student.dim=8"])
    assert cfg.stages["distill"].teachers == ["recog"] and cfg.stages["recog"].iters == 7
    assert cfg.data.synth.params["angle"] == [-20, 20] and cfg.student.dim == 8
    assert load_train_config(config).stages["distill"].teachers == ["recog", "recon"]  # the file is untouched
    for item, message in [("stages.distill.teachers", "expected KEY.PATH=VALUE"),
                          ("stages.distill.teachers=[recgo]", "recgo"),
                          ("seed.x=1", "seed is not a mapping")]:
        out = tmp_path / "run"
        assert main(["train", config, "--out", str(out), "--set", item]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and not out.exists()


def test_the_shipped_configs_parse_and_the_paper_paths_are_placeholders(monkeypatch):
    monkeypatch.chdir(REPO)
    tiny, shared, paper = (load_train_config(REPO / "configs" / f"{n}.yaml") for n in ("tiny", "shared", "paper"))
    assert tiny.data.demo and tiny.device == "cpu"
    assert paper.model == load_model_config("paper") and paper.stages["recog"].crop == 256
    finetune = paper.stages["finetune"]
    assert (paper.stages["recog"].lr, finetune.lr_encoder, finetune.lr) == (4e-4, 4e-5, 4e-4)
    with pytest.raises(DerainError, match=r"data.real_(rainy|clear): .*not found"):
        resolve_data(paper.data, list(STAGES))
    if (REPO / ".." / "shared" / "data").is_dir():
        resolved = resolve_data(shared.data, list(STAGES))
        assert len(resolved.real_clear) == 5 and resolved.val.endswith("ddn_sirr_test20")


def test_only_the_folders_a_selected_stage_reads_must_exist(tmp_path):
    from derain.train.config import DataConfig, SynthConfig
    missing = str(tmp_path / "no-such-rain")
    data = DataConfig(real_rainy=[missing], real_clear=[str(tmp_path)], synth=SynthConfig(clean=str(tmp_path)))
    resolved = resolve_data(data, ["scratch"])
    assert resolved.real_rainy == [missing] and resolved.synth.clean == str(tmp_path.resolve())
    for stages in (["recog"], ["distill"], ["scratch", "distill"]):
        with pytest.raises(DerainError, match="data.real_rainy: .*no-such-rain: not found"):
            resolve_data(data, stages)


def test_recog_holds_out_the_same_share_of_real_rainy_photos(data, tmp_path):
    """With data.holdout, T_recog trains on neither the held-out clear nor the held-out rainy photos,
    so scripts/teachers_report.py can score it on real rain it never saw."""
    cfg = load_train_config({**tiny_config(data), "data": {**tiny_config(data)["data"], "holdout": 0.5}})
    stage = build_stage("recog", cfg, RunDir(tmp_path), torch.device("cpu"))
    used = {path for path, _ in stage.dataset.items}
    for folder in ("rainy", "clear"):
        kept, held_out = holdout(sorted((data / folder).glob("*.png")), share=0.5)
        assert held_out and kept  # 6 photos a folder: both sides non-empty at this share
        assert set(kept) <= used and not set(held_out) & used


def test_scratch_can_start_from_a_trained_model_and_refuses_a_mismatched_one(finished_run, data, tmp_path):
    source = from_pretrained(finished_run / "scratch_model").state_dict()

    def one_tiny_step(out, **scratch):
        train(tiny_config(data, scratch={"iters": 1, "lr": 1e-12, "val_every": 0, **scratch}), out, stages=["scratch"])
        return from_pretrained(out / "scratch_model").state_dict()

    warm = one_tiny_step(tmp_path / "warm", init=str(finished_run / "scratch_model"))
    cold = one_tiny_step(tmp_path / "cold")
    assert all(torch.allclose(source[k], warm[k], atol=1e-6) for k in source)  # lr 1e-12 keeps the init
    assert not all(torch.allclose(source[k], cold[k], atol=1e-6) for k in source)
    relative = os.path.relpath(finished_run / "scratch_model")  # a rerun with the init as typed skips, not refuses
    stamp = (tmp_path / "warm" / "scratch_model" / "model.safetensors").stat().st_mtime_ns
    train(tiny_config(data, scratch={"iters": 1, "lr": 1e-12, "val_every": 0, "init": relative}), tmp_path / "warm",
          stages=["scratch"])
    assert (tmp_path / "warm" / "scratch_model" / "model.safetensors").stat().st_mtime_ns == stamp
    wider = {**tiny_config(data, scratch={"init": str(finished_run / "scratch_model")}),
             "model": {**MODEL, "dim": MODEL["dim"] * 2}}
    with pytest.raises(DerainError, match="init .*differs from this config's model"):
        train(wider, tmp_path / "wider", stages=["scratch"])
    with pytest.raises(DerainError, match="only scratch can start"):
        train(tiny_config(data, recon={"init": "bundled"}), tmp_path / "recon", stages=["recon"])


def one_added_step(data, tmp_path, source: nn.Module, model: dict) -> dict[str, torch.Tensor]:
    """One scratch step from `source` (saved in tmp_path/source) on a `model` that adds weights to it, at lr
    1e-12 and lr_added 1e-2: the source's own weights must stay; returns the state after the step."""
    cfg = {**tiny_config(data, scratch={"iters": 1, "lr": 1e-12, "lr_added": 1e-2, "val_every": 0, "clip_grad": 0,
                                        "init": str(tmp_path / "source")}), "model": model}
    train(cfg, tmp_path / "run", stages=["scratch"])
    after = from_pretrained(tmp_path / "run" / "scratch_model").state_dict()
    for k, v in source.state_dict().items():
        assert torch.allclose(after[k], v, atol=1e-6), k
    return after


def test_a_warm_start_may_add_a_context_branch_which_starts_at_zero_and_trains_at_its_own_lr(data, tmp_path):
    """init from a network without the dilated context branch: the rest is loaded, the branch's output conv
    starts at zero (the output is the init's), and Adam's first step moves it by lr_added per weight while
    lr 1e-12 keeps the rest."""
    torch.manual_seed(0)
    source = create_model({**MODEL, "detail_dim": 4})
    save_pretrained(source, tmp_path / "source")
    with_context = {**MODEL, "detail_dim": 4, "context_dim": 4}
    net = create_model(with_context)
    added = load_weights(net, str(tmp_path / "source"))
    assert added and all(".context." in k for k in added)
    assert set(net.state_dict()) - set(source.state_dict()) == set(added)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), source.eval()(x))
    after = one_added_step(data, tmp_path, source, with_context)
    step = after["decoder.detail.context.out.weight"].abs()
    assert torch.allclose(step, torch.full_like(step, 1e-2), rtol=1e-2)  # Adam's first step: lr·g/(|g| + eps)


def test_a_warm_start_may_add_blocks_past_the_inits_depth_which_start_as_the_identity_and_learn(data, tmp_path):
    """init from a shallower network: its blocks keep their weights and places (and so their window shifts),
    the blocks past its depth start with α = β = 0 and a zero MLP output, so the deeper network computes
    exactly what the init did; Adam's first step moves their α and β by lr_added. A shallower net than its
    init is still refused."""
    torch.manual_seed(0)
    source = create_model({**MODEL, "depth": 2})
    save_pretrained(source, tmp_path / "source")
    deeper = {**MODEL, "depth": 4}
    net = create_model(deeper)
    added = load_weights(net, str(tmp_path / "source"))
    assert added and {k.split(".")[2] for k in added} == {"2", "3"}
    assert set(net.state_dict()) - set(source.state_dict()) == set(added)
    for i in (2, 3):
        block = net.encoder.blocks[i]
        assert block.alpha.item() == block.beta.item() == 0 and not block.mlp[-1].weight.any()
        assert block.attn.qkv.weight.any()  # the branches themselves keep their fresh weights: they can learn
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), source.eval()(x))
    with pytest.raises(DerainError, match="differs from this config's model"):
        load_weights(create_model({**MODEL, "depth": 1}), str(tmp_path / "source"))
    after = one_added_step(data, tmp_path, source, deeper)
    for i in (2, 3):
        for name in ("alpha", "beta"):
            assert after[f"encoder.blocks.{i}.{name}"].abs().item() == pytest.approx(1e-2, rel=1e-2)


def test_validation_models_can_be_kept_and_averaged(data, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from average_models import main as average_main

    train(tiny_config(data, scratch={"keep_val_models": True}), tmp_path / "run", stages=["scratch"])
    kept = sorted(p.name for p in (tmp_path / "run" / "scratch").glob("val-*"))
    assert kept == ["val-00000004", "val-00000008"]
    a, b = (from_pretrained(tmp_path / "run" / "scratch" / k).state_dict() for k in kept)
    assert average_main([str(tmp_path / "mean"), *(str(tmp_path / "run" / "scratch" / k) for k in kept)]) == 0
    mean = from_pretrained(tmp_path / "mean").state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    for k in a:
        assert torch.allclose(mean[k].double(), (a[k].double() + b[k].double()) / 2, atol=1e-7), k
    final = from_pretrained(tmp_path / "run" / "scratch_model").state_dict()
    assert all(torch.equal(final[k], b[k]) for k in b)  # the step-8 validation is the final weights
    assert average_main([str(tmp_path / "capped"), str(tmp_path / "mean"), "--darken-only"]) == 0
    signed, capped = from_pretrained(tmp_path / "mean").eval(), from_pretrained(tmp_path / "capped").eval()
    assert capped.config.darken_only and not signed.config.darken_only
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(capped(x), torch.minimum(signed(x), x))
    assert average_main([str(tmp_path / "shrunk"), str(tmp_path / "capped"), "--shrink", "0.01"]) == 0
    shrunk = from_pretrained(tmp_path / "shrunk")
    assert shrunk.config.darken_only and shrunk.config.shrink == 0.01  # --shrink keeps the cap
    assert average_main([str(tmp_path / "mapped"), str(tmp_path / "shrunk"), "--shrink-streaks", "0.005",
                         "--streak-level", "2.5"]) == 0
    mapped = from_pretrained(tmp_path / "mapped").config
    assert (mapped.shrink, mapped.shrink_streaks, mapped.streak_level) == (0.01, 0.005, 2.5)
    wider = tmp_path / "wider"
    train({**tiny_config(data), "model": {**MODEL, "dim": MODEL["dim"] * 2}}, wider, stages=["scratch"])
    assert average_main([str(tmp_path / "bad"), str(tmp_path / "mean"), str(wider / "scratch_model")]) == 1


def test_recog_synthetic_rain_share_puts_rain_on_the_clear_training_photos(data, tmp_path):
    cfg = load_train_config(tiny_config(data, recog={"synthetic_rain": 0.5}))
    stage = build_stage("recog", cfg, RunDir(tmp_path), torch.device("cpu"))
    synthetic = stage.dataset.synthetic
    assert stage.dataset.share == 0.5 and "none" not in synthetic.weights
    assert set(synthetic.files) == {path for path, label in stage.dataset.real.items if label == CLEAR_LABEL}
    with pytest.raises(DerainError, match="synthetic_rain must be in"):
        load_train_config(tiny_config(data, recog={"synthetic_rain": 1.5}))


def test_online_family_params_reach_the_scratch_data_and_are_checked(data, tmp_path):
    faint = {"light": {"brightness": [0.05, 0.1]}}
    online = {"online": True, "families": {"light": 1.0}, "family_params": faint}
    cfg = load_train_config(tiny_config(data), overrides=[f"data.synth.{k}={json.dumps(v)}" for k, v in online.items()])
    assert build_stage("scratch", cfg, RunDir(tmp_path), torch.device("cpu")).dataset.overrides == faint
    with pytest.raises(DerainError, match=r"data\.synth.*light \(linear rain\) has no parameter\(s\) \['opacity'\]"):
        load_train_config(tiny_config(data), overrides=['data.synth.family_params={"light": {"opacity": [0, 1]}}'])


def test_finetune_and_scratch_train_on_eq_2_plus_the_lowfreq_term_when_it_has_a_weight(data, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config(data))
    cfg = load_train_config(config, overrides=["stages.scratch.lowfreq=2", "stages.scratch.lowfreq_size=4"])
    out, tgt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert stage_loss(cfg.stages["finetune"])(out, tgt).item() == recon_loss(out, tgt).item()
    expected = recon_loss(out, tgt) + 2 * lowfreq_loss(out, tgt, 4)
    assert stage_loss(cfg.stages["scratch"])(out, tgt).item() == pytest.approx(expected.item())


def test_scratch_with_a_rain_weight_hands_its_inputs_to_the_rain_pixel_term(data, tmp_path):
    online = ["data.synth.online=true", 'data.synth.families={"light": 1.0}']
    cfg = load_train_config(tiny_config(data), overrides=[*online, "stages.scratch.rain_weight=3",
                                                          "stages.scratch.rain_level=5"])
    module = build_stage("scratch", cfg, RunDir(tmp_path), torch.device("cpu")).module
    inputs, targets = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = module.net(inputs)
        expected = recon_loss(out, targets) + 3 * rain_pixel_loss(out, targets, inputs, 5 / 255)
        assert module((inputs, targets))["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(DerainError, match="rain_weight and rain_level must be non-negative"):
        load_train_config(tiny_config(data), overrides=["stages.scratch.rain_weight=-1"])


def test_scratch_hands_its_shrink_jitter_to_the_decoder(data, tmp_path):
    online = ["data.synth.online=true", "model.shrink=0.05", 'data.synth.families={"light": 1.0}']
    for jitter in (0.0, 0.5):
        cfg = load_train_config(tiny_config(data), overrides=[*online, f"stages.scratch.shrink_jitter={jitter}"])
        assert build_stage("scratch", cfg, RunDir(tmp_path), torch.device("cpu")).val_net.decoder.shrink_jitter == jitter


def test_scratch_with_streak_map_trains_through_the_threshold_per_pixel(data, tmp_path):
    """stages.scratch.streak_map: each pair comes with streak_threshold's map of its input, made by the dataset
    (so in the DataLoader's workers), and the loss is the one of the network run through it (the oracle: the
    same net called by hand with the map), not through `shrink` alone."""
    online = ["data.synth.online=true", "model.shrink=0.05", "model.shrink_streaks=0.01", 'data.synth.families={"light": 1.0}']
    cfg = load_train_config(tiny_config(data), overrides=[*online, "stages.scratch.streak_map=true"])
    stage = build_stage("scratch", cfg, RunDir(tmp_path), torch.device("cpu"))
    pair = stage.dataset[0]
    assert len(pair) == 3 and torch.equal(pair[2], streak_threshold(cfg.student, pair[0][None])[0])
    stage.dataset.set_epoch(1)  # the crops of another epoch, as batch_stream asks
    assert not torch.equal(stage.dataset[0][0], pair[0])
    net = stage.val_net.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    inputs, targets = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    inputs[..., 10:50, 20:22] = 1.0  # a streak, so the map has both values
    threshold = streak_threshold(net.config, inputs)
    assert threshold.unique().numel() == 2
    with torch.no_grad():
        loss = stage.module((inputs, targets, threshold))["loss"]
        assert loss.item() == pytest.approx(stage_loss(cfg.stages["scratch"])(net(inputs, threshold), targets).item())
        assert loss.item() != pytest.approx(stage_loss(cfg.stages["scratch"])(net(inputs), targets).item())
    plain = build_stage("scratch", load_train_config(tiny_config(data), overrides=online), RunDir(tmp_path), torch.device("cpu"))
    assert len(plain.dataset[0]) == 2


def test_deterministic_training_does_not_nan_fill_new_tensors_and_restores_the_setting(data, tmp_path, monkeypatch):
    """use_deterministic_algorithms also fills every new tensor with NaN (fill_uninitialized_memory), a
    debugging aid that cost a CPU step 13%; training keeps deterministic algorithms and drops only that."""
    seen = []
    monkeypatch.setattr(pipeline, "train_stage", lambda *args: seen.append(
        (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)) or True)
    before = torch.utils.deterministic.fill_uninitialized_memory
    train(tiny_config(data), tmp_path / "run", stages=["recon"])
    assert seen == [(True, False)]
    assert torch.utils.deterministic.fill_uninitialized_memory == before


def test_restoration_validation_scores_the_network_upright_whatever_auto_would_turn(tmp_path, tiny_model_dir,
                                                                                     make_image, monkeypatch):
    """In-run validation derains upright even where `--rain-angle auto` would turn a photo (here a detector
    that turns every one): its PSNR is that of `derain.load(rain_angle=0)`'s outputs, computed by hand."""
    from derain import inference
    from derain.api import load
    from derain.data.layouts import Pair
    from derain.imageio import read_image_uint8
    from derain.metrics import psnr
    from derain.train.validation import validate_restoration

    monkeypatch.setattr(inference, "find_rain_angle", lambda forward, cfg, img, upright, **trial: 45.0)
    pairs = [Pair(f"p{i}", make_image(tmp_path / f"r{i}.png", size=(64, 72), seed=i),
                  make_image(tmp_path / f"c{i}.png", size=(64, 72), seed=10 + i)) for i in range(2)]
    net = from_pretrained(tiny_model_dir)
    scored = validate_restoration(net, pairs, torch.device("cpu"))["val_psnr"]
    upright, turned = load(tiny_model_dir, device="cpu", rain_angle=0), load(tiny_model_dir, device="cpu")
    by_hand = [psnr(m(read_image_uint8(p.rainy)), read_image_uint8(p.clean)) for m in (upright, turned) for p in pairs]
    assert scored == pytest.approx(np.mean(by_hand[:2]), abs=1e-9)
    assert abs(np.mean(by_hand[2:]) - np.mean(by_hand[:2])) > 1e-3  # turning would have scored otherwise


def test_a_warm_start_may_drop_the_inits_detail_path_and_d_drs_conv_starts_fresh(data, tmp_path):
    """init from a network with a detail path into one without (`detail_dim` 0): the encoder and D_dr's SPP
    are the init's, the path is dropped, and D_dr's output conv (its shape set by the path) keeps its fresh,
    non-zero weights: behind a `shrink` threshold a zero conv gets no gradient, as shown at the end. One step
    at lr 1e-12 keeps the init's weights, and lr_added 1e-2 moves the fresh conv by up to 1e-2 more than
    lr_added 1e-12 does."""
    torch.manual_seed(0)
    source = create_model({**MODEL, "detail_dim": 4})
    save_pretrained(source, tmp_path / "source")
    slim = {**MODEL, "detail_dim": 0}
    net = create_model(slim)
    fresh = net.decoder.conv.weight.detach().clone()
    added = load_weights(net, str(tmp_path / "source"))
    assert sorted(added) == ["decoder.conv.bias", "decoder.conv.weight"]
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith(("decoder.detail.", "decoder.conv."))}
    assert kept and set(kept) | set(added) == set(net.state_dict())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in kept.items())
    assert fresh.any() and torch.equal(net.decoder.conv.weight, fresh)

    def step(lr_added: float) -> torch.Tensor:
        cfg = {**tiny_config(data, scratch={"iters": 1, "lr": 1e-12, "lr_added": lr_added, "val_every": 0,
                                            "clip_grad": 0, "init": str(tmp_path / "source")}), "model": slim}
        out = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
        train(cfg, out, stages=["scratch"])
        after = from_pretrained(out / "scratch_model").state_dict()
        assert all(torch.allclose(after[k], v, atol=1e-6) for k, v in kept.items())
        return after["decoder.conv.weight"]

    moved = (step(1e-2) - step(1e-12)).abs()  # Adam's first step: lr·g/(|g| + eps), lr where |g| ≫ eps
    assert moved.max().item() == pytest.approx(1e-2, rel=1e-2)
    with torch.no_grad():  # the dead start this avoids: a zero conv behind a threshold stays zero
        zero = create_model({**slim, "shrink": 0.05})
        zero.decoder.conv.weight.zero_()
        zero.decoder.conv.bias.zero_()
        x = torch.rand(2, 3, 16, 16, requires_grad=True)
    zero.decoder.conv.weight.requires_grad_(True)
    (zero(x) - x.detach() * 0.5).square().mean().backward()
    assert not zero.decoder.conv.weight.grad.any()


def test_restoration_validation_counts_a_photo_returned_unchanged_as_100_db_not_inf(tmp_path, make_image):
    """An identity network on two pairs, one a clean photo with itself: in-run validation's mean is that pair's
    capped 100 dB and the other pair's input PSNR, by hand, not inf (which would freeze the best step)."""
    from derain.data.layouts import Pair
    from derain.imageio import read_image_uint8
    from derain.metrics import psnr
    from derain.train.validation import validate_restoration

    net = create_model({**MODEL, "detail_dim": 0})
    nn.init.zeros_(net.decoder.conv.weight)
    nn.init.zeros_(net.decoder.conv.bias)
    same = make_image(tmp_path / "same.png", size=(40, 48), seed=0)
    rainy, clean = (make_image(tmp_path / f"{n}.png", size=(40, 48), seed=s) for n, s in (("r", 1), ("c", 2)))
    scored = validate_restoration(net, [Pair("same", same, same), Pair("p", rainy, clean)], torch.device("cpu"))
    by_hand = (100.0 + psnr(read_image_uint8(rainy), read_image_uint8(clean))) / 2
    assert scored["val_psnr"] == pytest.approx(by_hand, abs=1e-9)
