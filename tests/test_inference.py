"""Tiling, blending, self-ensemble, memory budget and device selection (derain.inference)."""
import dataclasses
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from derain import inference
from derain.archs import create_model
from derain.errors import DerainError
from derain.inference import (activation_bytes_per_pixel, alignment, autocast_dtype, axis_weights, choose_tile,
                              derain_tensor, dihedral, inverse_dihedral, model_forward, parse_bytes,
                              receptive_radius, select_device, self_ensemble, streak_threshold, tile_for_budget,
                              tile_spans, tiled)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def strong_tiny():
    """The tiny preset with large random weights, so that tile borders change the output visibly."""
    torch.manual_seed(0)
    net = create_model("tiny").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("detail, context", [(0, 0), (4, 0), (4, 4)])
def test_receptive_radius_bounds_where_one_pixel_has_effect(strong_tiny, detail, context):
    if detail:
        torch.manual_seed(0)
        strong_tiny = create_model({**strong_tiny.config.to_dict(), "detail_dim": detail,
                                    "context_dim": context}).eval()
        with torch.no_grad():
            for p in strong_tiny.parameters():
                p.normal_(0, 0.3)
    forward = model_forward(strong_tiny, CPU)
    x = torch.rand(1, 3, 192, 192)
    y, z = 96, 97
    bumped = x.clone()
    bumped[..., y, z] += 0.5
    changed = (forward(bumped) - forward(x)).abs()[0].amax(0) > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max((rows - y).abs().max(), (cols - z).abs().max()).item()
    assert 0 < reach <= receptive_radius(strong_tiny.config)


def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(strong_tiny):
    """Ramps sit in the middle half of each overlap, so overlap >= 4 × radius makes tiling exact."""
    cfg, forward = strong_tiny.config, model_forward(strong_tiny, CPU)
    step = alignment(cfg)
    overlap = -(-4 * receptive_radius(cfg) // step) * step  # 208 for tiny: radius 51
    tile = 2 * overlap + step
    img = torch.rand(1, 3, 696, 726)  # three tiles each way, the last ones longer than `tile`
    assert len(tile_spans(696, tile, overlap, step)) == len(tile_spans(726, tile, overlap, step)) == 3
    whole = forward(img)
    assert (tiled(forward, img, tile, overlap, step) - whole).abs().max() <= 1 / 255
    # the check has teeth: a small overlap leaves visible seams with these weights
    assert (tiled(forward, img, 128, 32, step) - whole).abs().max() > 1 / 255


@pytest.mark.parametrize("length", [1, 15, 128, 129, 300, 455, 1000, 1031])
def test_tile_spans_are_aligned_cover_the_axis_and_overlap(length):
    tile, overlap, step = 128, 32, 16
    spans = tile_spans(length, tile, overlap, step)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(start % step == 0 for start, _ in spans)
    assert all(end - start <= tile + step - 1 for start, end in spans)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 and e0 - s1 >= overlap


def test_blend_weights_sum_to_one_and_vanish_near_inner_edges():
    overlap = 32
    spans = tile_spans(1000, 128, overlap, 16)
    total = torch.zeros(1000)
    for (start, end), w in zip(spans, axis_weights(spans, overlap)):
        total[start:end] += w
        if start > 0:
            assert w[: overlap // 4].abs().max() == 0
        if end < 1000:
            assert w[-overlap // 4:].abs().max() == 0
    assert torch.allclose(total, torch.ones(1000), atol=1e-6)


def test_the_eight_transforms_are_distinct_and_inverted():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    images = [dihedral(x, k) for k in range(8)]
    assert len({(tuple(im.shape), tuple(im.flatten().tolist())) for im in images}) == 8
    for k, im in enumerate(images):
        assert torch.equal(inverse_dihedral(im, k), x)


def conv_with(kernel: torch.Tensor):
    weight = kernel.expand(3, 1, *kernel.shape).contiguous()
    return lambda x, threshold=None: F.conv2d(x, weight, padding=kernel.shape[0] // 2, groups=3)


def test_self_ensemble_leaves_an_equivariant_model_unchanged():
    blur = conv_with(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16)
    x = torch.rand(1, 3, 20, 27)
    assert torch.allclose(self_ensemble(blur, x), blur(x), atol=1e-6)


def test_self_ensemble_averages_a_kernel_over_the_four_flips():
    kernel = torch.rand(5, 5)
    k = kernel.numpy()
    flips = [k, k[::-1], k[:, ::-1], k[::-1, ::-1]]
    symmetric = torch.from_numpy(np.mean(flips, axis=0).copy())
    x = torch.rand(1, 3, 20, 27)
    assert torch.allclose(self_ensemble(conv_with(kernel), x), conv_with(symmetric)(x), atol=1e-5)
    assert not torch.allclose(conv_with(kernel)(x), conv_with(symmetric)(x), atol=1e-3)


def test_self_ensemble_keeps_a_vertical_streak_filter_vertical():
    """A model that removes only vertical streaks (a vertical 1×9 mean) keeps removing them under --tta;
    averaging in the 90° turns would blend in a horizontal mean, which leaves the streaks."""
    vertical = conv_with(torch.zeros(9, 9).index_fill(1, torch.tensor([4]), 1.0) / 9)
    x = torch.rand(1, 3, 40, 40)
    x[..., 7] += 1.0  # a vertical streak
    assert torch.allclose(self_ensemble(vertical, x), vertical(x), atol=1e-5)


def test_tile_from_memory_budget_fits_and_is_aligned():
    cfg = create_model("default").config
    budget = parse_bytes("1GB")
    tile = tile_for_budget(cfg, budget, overlap=32)
    assert tile % alignment(cfg) == 0
    per_pixel = activation_bytes_per_pixel(cfg)
    assert tile**2 * per_pixel <= budget < (tile + alignment(cfg)) ** 2 * per_pixel
    assert choose_tile(cfg, 3840, 2160, None, 32, budget) == tile
    assert choose_tile(cfg, 256, 256, None, 32, budget) is None  # fits: one pass
    assert choose_tile(cfg, 3840, 2160, 0, 32, budget) is None  # tile 0: never tile
    with pytest.raises(DerainError, match="too small"):
        tile_for_budget(cfg, parse_bytes("1MB"), overlap=32)


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages that ops create and that are still alive; keeps the peak."""

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak = {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            storage = t.untyped_storage() if isinstance(t, torch.Tensor) else None
            if storage is not None and storage.nbytes() and storage.data_ptr() not in self.live:
                self.live[storage.data_ptr()] = storage.nbytes()
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
                weakref.finalize(storage, self.free, storage.data_ptr())
        return out

    def free(self, key):
        self.now -= self.live.pop(key)


@pytest.mark.parametrize("detail_dim, context_dim", [(0, 0), (24, 0), (24, 16)])
def test_activation_estimate_bounds_the_measured_peak(detail_dim, context_dim):
    """The per-pixel estimate that sizes tiles is above the measured peak of live activations, and not
    loose by more than 2x: the full-resolution detail path and its context branch included."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(create_model("default").config, detail_dim=detail_dim, context_dim=context_dim)
    net, side = create_model(cfg).eval(), 128
    with torch.no_grad(), LiveBytes() as counter:
        net(torch.rand(1, 3, side, side))
    measured = counter.peak / side**2
    assert measured <= activation_bytes_per_pixel(cfg) <= 2 * measured


def test_cpu_default_tiles_are_cache_sized_unless_a_budget_is_given():
    cfg = create_model("default").config
    assert choose_tile(cfg, 2000, 2000, None, 32, None, on_cpu=True) == inference.CPU_TILE == 1024
    assert choose_tile(cfg, 1000, 1000, None, 32, None, on_cpu=True) is None  # one tile: one pass
    assert choose_tile(cfg, 4000, 4000, None, 32, None, on_cpu=False) == tile_for_budget(cfg, 1 << 30, 32)
    assert choose_tile(cfg, 4000, 4000, None, 32, parse_bytes("2GB"), on_cpu=True) > 1024


@pytest.mark.parametrize("length, tile, count", [(1024, 512, 3), (2160, 1024, 3), (3840, 1024, 4), (1100, 1024, 2)])
def test_tiles_shrink_to_spread_the_overlap_evenly(length, tile, count):
    """No nearly full tile recomputed at the end: the tiles cover the axis with about count - 1 overlaps."""
    spans = tile_spans(length, tile, 32, 32)
    assert len(spans) == count
    assert sum(end - start for start, end in spans) <= length + (count - 1) * 32 + count * 32


def test_derain_tensor_tiles_with_the_size_the_budget_allows(monkeypatch, strong_tiny):
    cfg, used = strong_tiny.config, []
    real_tiled = inference.tiled
    monkeypatch.setattr(inference, "tiled", lambda f, x, tile, *a: used.append(tile) or real_tiled(f, x, tile, *a))
    budget = int(activation_bytes_per_pixel(cfg) * 100**2)
    out = derain_tensor(model_forward(strong_tiny, CPU), cfg, torch.rand(1, 3, 150, 200), max_memory=budget)
    assert used == [96] and out.shape == (1, 3, 150, 200)


@pytest.mark.parametrize("text, expected", [("2GB", 2 << 30), ("512MiB", 512 << 20), ("1.5G", 3 << 29),
                                            ("1000", 1000), (4096, 4096)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_parse_bytes_rejects_nonsense():
    with pytest.raises(DerainError, match="memory size"):
        parse_bytes("lots")


def test_device_and_precision_choices():
    auto = select_device()
    assert auto.type in ("cuda", "mps", "cpu")
    assert select_device("cpu") == CPU
    with pytest.raises(DerainError, match="unknown device"):
        select_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(DerainError, match="CUDA is not available"):
            select_device("cuda")
    assert autocast_dtype(None, CPU) is None and autocast_dtype("fp32", CPU) is None
    with pytest.raises(DerainError, match="needs a GPU"):
        autocast_dtype("fp16", CPU)
    assert autocast_dtype("bf16", torch.device("cuda")) == torch.bfloat16


@pytest.mark.parametrize("has_bf16", [True, False])
def test_bf16_on_the_cpu_only_where_it_has_bf16_instructions(monkeypatch, has_bf16):
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: has_bf16)
    if has_bf16:
        assert autocast_dtype("bf16", CPU) == torch.bfloat16
    else:
        with pytest.raises(DerainError, match="bf16 on the CPU needs bf16 instructions"):
            autocast_dtype("bf16", CPU)


@pytest.mark.skipif(not inference.cpu_has_bf16(), reason="this CPU has no bf16 instructions (AVX-512 BF16, AMX)")
def test_bf16_on_the_cpu_is_close_to_fp32():
    torch.manual_seed(0)
    net = create_model("default").eval()
    x = torch.rand(1, 3, 64, 80)
    full, half = model_forward(net, CPU)(x), model_forward(net, CPU, torch.bfloat16)(x)
    assert half.dtype == torch.float32 and 0 < (half - full).abs().max() < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_half_precision_on_gpu_is_close_to_fp32():
    torch.manual_seed(0)
    net = create_model("tiny").eval().cuda()
    x = torch.rand(1, 3, 64, 80)
    full = model_forward(net, torch.device("cuda"))(x)
    half = model_forward(net, torch.device("cuda"), torch.float16)(x)
    assert half.device == x.device and (half - full).abs().max() < 2e-2


@pytest.mark.parametrize("tile, overlap, words", [
    (16, 32, "tile 16 (rounded down to 0, a multiple of 32 px) is too small for overlap 32: use a tile of at least 96"),
    (90, 20, "tile 90 (rounded down to 64, a multiple of 32 px) is too small for overlap 20 (rounded up to 32, "
             "a multiple of 32 px): use a tile of at least 96"),
    (64, 32, "tile 64 is too small for overlap 32: use a tile of at least 96"),
])
def test_tiling_errors_name_the_value_given_then_the_aligned_one(tile, overlap, words):
    cfg = create_model("default").config  # aligned to 4 × 8 = 32 px
    with pytest.raises(DerainError) as error:
        inference.align_tiling(cfg, tile, overlap)
    assert str(error.value) == words + ", or a smaller overlap"


def test_check_tiling_warns_when_overlap_dominates():
    cfg = create_model("default").config  # 272 bytes per pixel
    assert inference.check_tiling(cfg, None, 32, None) is None
    assert inference.check_tiling(cfg, None, 32, "10MB") is None  # 192-px tiles: 1.4× the work
    warning = inference.check_tiling(cfg, 160, 64, None)
    assert "tile 160 makes 160-px tiles that overlap by 64 px: about 2.8× the work" in warning
    assert inference.check_tiling(cfg, 0, 32, "1KB") is None  # never tiled: the budget does not matter
    with pytest.raises(DerainError, match="max memory 1KB is too small for overlap 32: tiles need at least "
                                          "96×96 pixels, about 2.39 MiB"):
        inference.check_tiling(cfg, None, 32, "1KB")


def test_default_threads_are_the_free_cores_of_this_process(monkeypatch):
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(inference.torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(inference, "_cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(inference, "_busy_cores", lambda cpus: 0.2)
    assert inference.default_threads() == 4
    monkeypatch.setattr(inference, "_busy_cores", lambda cpus: 1.1)  # one core busy elsewhere
    assert inference.default_threads() == 3
    monkeypatch.setattr(inference, "_busy_cores", lambda cpus: 4.0)
    assert inference.default_threads() == 1
    monkeypatch.setattr(inference, "_cgroup_cpu_quota", lambda: 1.5)  # a container allowed 1.5 CPUs
    assert inference.default_threads() == 2
    monkeypatch.setattr(inference.torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1 is kept
    assert inference.default_threads() == 1


def test_busy_cores_come_from_two_readings_of_cpu_times(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    readings = iter([
        "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 100 0 0 900 0 0 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0 0 0\n"
        "cpu2 0 0 0 1000 0 0 0 0 0 0\n",
        "cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 110 0 0 900 0 0 0 0 0 0\ncpu1 5 0 0 1005 0 0 0 0 0 0\n"
        "cpu2 10 0 0 1000 0 0 0 0 0 0\n",
    ])
    real_sleep = inference.time.sleep
    monkeypatch.setattr(inference.time, "sleep", lambda s: stat.write_text(next(readings)))
    stat.write_text(next(readings))
    # cpu0 busy all 10 ticks, cpu1 half of them; cpu2 is not ours
    assert inference._busy_cores({0, 1}, path=str(stat)) == pytest.approx(1.5)
    monkeypatch.setattr(inference.time, "sleep", real_sleep)
    assert inference._busy_cores({0}, interval=0.0, path=str(tmp_path / "missing")) == 0.0


def test_cgroup_quota_is_read(tmp_path):
    (tmp_path / "limited").write_text("150000 100000\n")
    (tmp_path / "free").write_text("max 100000\n")
    assert inference._cgroup_cpu_quota(str(tmp_path / "limited")) == 1.5
    assert inference._cgroup_cpu_quota(str(tmp_path / "free")) is None
    assert inference._cgroup_cpu_quota(str(tmp_path / "missing")) is None


# ---------------------------------------------------------------- a threshold per pixel (shrink_streaks)

def rainy_grey(size: int = 96) -> tuple[torch.Tensor, np.ndarray]:
    """A flat grey photo with vertical streaks 2 px wide, 40 px long and 30 levels bright, and their mask."""
    y = np.full((size, size), 100.0)
    mask = np.zeros((size, size), bool)
    for x0 in range(10, size - 10, 12):
        mask[20:60, x0:x0 + 2] = True
    y[mask] += 30
    return torch.from_numpy(np.repeat(y[None], 3, 0)[None] / 255).float(), mask


def test_streak_threshold_is_low_on_the_streaks_and_shrink_elsewhere():
    cfg = dataclasses.replace(create_model("tiny").config, shrink=0.05, shrink_streaks=0.02)
    img, mask = rainy_grey()
    t = streak_threshold(cfg, img)[0, 0].numpy()
    assert t.shape == mask.shape and set(np.unique(t)) == {np.float32(0.02), np.float32(0.05)}
    assert (t[mask] == np.float32(0.02)).mean() > 0.9  # the streaks, but for their ends
    far = ~np.pad(mask, 3)[:-6, 3:-3] & ~mask  # rows shifted away: nothing near a streak
    far[15:65] = False
    assert (t[far] == np.float32(0.05)).all()
    assert streak_threshold(dataclasses.replace(cfg, shrink_streaks=0.0), img) is None


def test_streak_threshold_finds_the_angle_of_a_large_photo_on_its_centre():
    """Streaks leaning 20° (rain_angle's sense) on a 1100 × 1300 photo: the map is the rain layer at that
    angle (the oracle: rain_layer given it), though the angle is looked for on the central 1024² only."""
    from derain.data.rain_bank import rain_layer

    rng = np.random.default_rng(0)
    y = np.full((1100, 1300), 90.0) + rng.normal(0, 2, (1100, 1300))
    yy, xx = np.mgrid[:1100, :1300]
    along = (xx - np.tan(np.radians(20)) * (1100 - yy))  # lines x = x0 + tan(20°)·(H − y): top leans right
    y[(np.mod(along, 23) < 2) & (np.mod(yy, 60) < 35)] += 40
    rgb = np.repeat(np.clip(y, 0, 255).round().astype(np.uint8)[..., None], 3, 2)
    marked = {}
    for level in (4.0, 1.5):
        cfg = dataclasses.replace(create_model("tiny").config, shrink=0.05, shrink_streaks=0.02, streak_level=level)
        t = streak_threshold(cfg, torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()
        expected = np.where(rain_layer(rgb, 20.0) > level, np.float32(0.02), np.float32(0.05))
        assert (t == expected).mean() > 0.999 and (t == np.float32(0.02)).mean() > 0.02
        marked[level] = (t == np.float32(0.02)).mean()
    assert marked[1.5] > marked[4.0]  # a lower streak_level marks fainter streaks too


@pytest.mark.parametrize("shape", [(1, 1), (20, 300), (31, 31)])
def test_streak_threshold_of_a_photo_too_small_for_a_rain_angle_is_shrink(shape):
    cfg = dataclasses.replace(create_model("tiny").config, shrink=0.05, shrink_streaks=0.02)
    t = streak_threshold(cfg, torch.rand(2, 3, *shape))
    assert t.shape == (2, 1, *shape) and (t == 0.05).all()


def thresholded_net_and_raw_change(streaks: float):
    """A random tiny network behind shrink 0.05 and `shrink_streaks`, the rainy grey image (and its streak
    mask), and the same network's change with no threshold: the oracle's input."""
    torch.manual_seed(0)
    net = create_model({**create_model("tiny").config.to_dict(), "detail_dim": 4,
                        "shrink": 0.05, "shrink_streaks": streaks}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    img, mask = rainy_grey()
    raw_net = create_model({**net.config.to_dict(), "darken_only": False, "shrink": 0.0, "shrink_streaks": 0.0})
    raw_net.load_state_dict(net.state_dict())
    with torch.no_grad():
        raw = (raw_net.eval()(img) - img)[0].numpy()
    return net, img, mask, raw


def test_derain_tensor_soft_thresholds_the_raw_residual_per_pixel():
    """The oracle: the network with no threshold, then the residual soft-thresholded by hand (numpy) at
    shrink_streaks on the streaks and shrink elsewhere."""
    net, img, mask, raw = thresholded_net_and_raw_change(0.01)
    t = np.where(streak_threshold(net.config, img)[0].numpy() == np.float32(0.01), 0.01, 0.05)
    expected = img[0].numpy() + np.sign(raw) * np.maximum(np.abs(raw) - t, 0)
    out = derain_tensor(model_forward(net, CPU), net.config, img)[0].numpy()
    assert np.abs(out - expected).max() < 1e-5
    uniform = img[0].numpy() + np.sign(raw) * np.maximum(np.abs(raw) - 0.05, 0)
    assert np.abs(out - uniform)[:, mask].max() > 1e-3  # the streaks do see the lower threshold


@pytest.mark.parametrize("streaks", [0.01, 0.0])
@pytest.mark.parametrize("strength", [2.0, 0.5])
def test_strength_divides_the_thresholds(streaks, strength):
    """The same hand oracle as above, at shrink / strength and shrink_streaks / strength; a model with
    one threshold (no streak map) gets shrink / strength everywhere."""
    net, img, _, raw = thresholded_net_and_raw_change(streaks)
    on_streaks = streaks and streak_threshold(net.config, img)[0].numpy() == np.float32(streaks)
    t = np.where(on_streaks, streaks, 0.05) / strength
    expected = img[0].numpy() + np.sign(raw) * np.maximum(np.abs(raw) - t, 0)
    out = derain_tensor(model_forward(net, CPU), net.config, img, strength=strength)[0].numpy()
    assert np.abs(out - expected).max() < 1e-5
    assert np.abs(out - derain_tensor(model_forward(net, CPU), net.config, img)[0].numpy()).max() > 1e-3


def test_tiles_and_flips_carry_the_threshold_map(strong_tiny):
    """Tiled with an overlap that covers the receptive field, a per-pixel threshold gives the whole-image
    output; under --tta each flip gets the flipped map (a map left unflipped changes the result)."""
    cfg = dataclasses.replace(strong_tiny.config, shrink=0.05, shrink_streaks=0.01)
    net = create_model(cfg).eval()
    net.load_state_dict(strong_tiny.state_dict())
    forward, step = model_forward(net, CPU), alignment(cfg)
    overlap = -(-4 * receptive_radius(cfg) // step) * step
    img = torch.rand(1, 3, 3 * overlap, 3 * overlap + 40)
    threshold = torch.where(torch.rand(1, 1, *img.shape[-2:]) > 0.5, 0.01, 0.05)
    whole = forward(img, threshold)
    assert (tiled(forward, img, 2 * overlap + step, overlap, step, threshold) - whole).abs().max() <= 1 / 255
    small = img[..., :64, :80]
    flipped_map = self_ensemble(forward, small, threshold[..., :64, :80])
    same_map = sum(inverse_dihedral(forward(dihedral(small, k), threshold[..., :64, :80]), k) for k in (0, 2, 4, 6)) / 4
    by_hand = sum(inverse_dihedral(forward(dihedral(small, k), dihedral(threshold[..., :64, :80], k)), k)
                  for k in (0, 2, 4, 6)) / 4
    assert torch.allclose(flipped_map, by_hand, atol=1e-6) and not torch.allclose(flipped_map, same_map, atol=1e-3)


# ---- rain off the vertical (--rain-angle) ----

def test_rain_angle_leaves_a_photo_the_model_leaves_alone_exactly_as_it_was(strong_tiny):
    """Only the model's change is turned back, so a model that changes nothing changes no pixel, and a
    constant change reaches every pixel, corners included (the canvas holds the whole turned photo)."""
    img = torch.rand(1, 3, 45, 70)
    for angle in (50.0, -65.0, 90.0):
        same = derain_tensor(lambda x, t: x.clone(), strong_tiny.config, img, rain_angle=angle)
        assert torch.equal(same, img)
        darker = derain_tensor(lambda x, t: x - 0.1, strong_tiny.config, img, rain_angle=angle)
        torch.testing.assert_close(darker, img - 0.1, atol=1e-4, rtol=0)


def test_rain_angle_keeps_a_darken_only_model_darken_only(strong_tiny):
    """Bicubic turning rings around a sharp change; a darken-only model's output stays at or below its input."""
    cfg = dataclasses.replace(strong_tiny.config, darken_only=True)
    img = torch.full((1, 3, 60, 60), 0.5)
    streak = lambda x, t: x - (torch.arange(x.shape[-1]) % 9 == 0).float() * 0.4  # sharp vertical lines taken off
    for darken_only, brighter in ((True, False), (False, True)):
        out = derain_tensor(streak, dataclasses.replace(cfg, darken_only=darken_only), img, rain_angle=40.0)
        assert bool((out > img + 1e-6).any()) == brighter


def test_rain_angle_shows_the_model_the_rain_upright(strong_tiny):
    """A streak leaning 50° like / reaches the model vertical (its direction by the structure tensor of
    tests/test_synthesis.py, independent of the turn, on the canvas's centre: its corners mirror the photo),
    and the opposite sign turns it further over."""
    from derain.data.synthesis import streak_kernel
    from test_synthesis import angle_error, streak_angle

    canvas, k = np.zeros((200, 200)), streak_kernel(60.0, 50.0, 2.0)
    top, left = (200 - k.shape[0]) // 2, (200 - k.shape[1]) // 2
    canvas[top:top + k.shape[0], left:left + k.shape[1]] = k
    img = torch.from_numpy(canvas).float().expand(1, 3, 200, 200).contiguous()
    seen = []

    def record(x, t):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        seen.append(x[0, :, h - 50:h + 50, w - 50:w + 50].permute(1, 2, 0).double().numpy())
        return x

    for angle in (50.0, -50.0):
        derain_tensor(record, strong_tiny.config, img, rain_angle=angle)
    assert angle_error(streak_angle(seen[0], np.zeros_like(seen[0])), 0.0) < 3
    assert angle_error(streak_angle(seen[1], np.zeros_like(seen[1])), 0.0) > 60


@pytest.mark.parametrize("angle", [55.0, -65.0, 40.0])
def test_wind_candidate_is_the_angle_of_streaks_blown_off_the_vertical(angle):
    """On a smooth scene with light linear rain at a known angle (the synthesiser's: the oracle), the candidate is
    within one 5° step of it."""
    from derain.data.synthesis import synthesize
    from derain.inference import wind_candidate

    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    scene = np.stack([0.3 + 0.3 * yy, 0.4 + 0.2 * xx, 0.5 * np.ones_like(xx)], -1)
    rainy, _ = synthesize(scene, "linear", np.random.default_rng(0), angle=angle)
    assert abs(wind_candidate((np.clip(rainy, 0, 1) * 255).round().astype(np.uint8)) - angle) <= 5


def test_auto_rain_angle_never_turns_for_a_change_that_is_the_same_either_way(strong_tiny):
    """A 'model' that darkens every pixel alike changes the square as much turned as upright, so it stays upright;
    one that changes nothing is never turned either."""
    from derain.inference import find_rain_angle

    img = torch.rand(1, 3, 120, 150)
    for forward in (lambda x, t: x - 0.1, lambda x, t: x.clone()):
        upright = derain_tensor(forward, strong_tiny.config, img)
        assert find_rain_angle(forward, strong_tiny.config, img, upright) is None
        assert torch.equal(derain_tensor(forward, strong_tiny.config, img, rain_angle="auto"), upright)


def test_auto_rain_angle_tiles_its_trial_pass_as_asked(strong_tiny):
    """The trial pass (a turned square of up to 384², here the whole 200 × 300 photo's 200² centre, about 280² once
    turned) is tiled like the photo itself: with --tile 64 no network pass sees a side of 128 px or more."""
    sides = []

    def forward(x, t):
        sides.append(max(x.shape[-2:]))
        return x - 0.05 * x.mean()

    derain_tensor(forward, strong_tiny.config, torch.rand(1, 3, 200, 300), rain_angle="auto", tile=64, overlap=16)
    assert len(sides) > 12 and max(sides) < 128


def test_rain_angle_out_of_range_is_refused():
    import derain

    with pytest.raises(DerainError, match="rain angle 120: give degrees from vertical, -90 to 90"):
        derain.load(rain_angle=120)
    with pytest.raises(DerainError, match="rain angle 'sideways': give degrees from vertical, -90 to 90 .*, or 'auto'"):
        derain.load(rain_angle="sideways")


# ---- rain wider than the model learnt (--scale) ----

@pytest.mark.parametrize("size, scale", [((1600, 1200), 1.0), ((900, 1600), 1.0), ((3200, 2400), 2.0),
                                         ((3024, 4032), 2.52), ((2160, 3840), 2.4)])
def test_auto_scale_brings_the_long_side_to_1600_px(size, scale):
    assert inference.auto_scale(*size) == pytest.approx(scale)


def test_scale_leaves_a_photo_the_model_leaves_alone_exactly_as_it_was(strong_tiny):
    """Only the model's change is enlarged, so a model that changes nothing changes no pixel, and a constant
    change reaches every pixel, edges included."""
    img = torch.rand(1, 3, 90, 140)
    for scale in (2.0, 3.5):
        assert torch.equal(derain_tensor(lambda x, t: x.clone(), strong_tiny.config, img, scale=scale), img)
        darker = derain_tensor(lambda x, t: x - 0.1, strong_tiny.config, img, scale=scale)
        torch.testing.assert_close(darker, img - 0.1, atol=1e-5, rtol=0)


def test_scale_shows_the_model_wide_streaks_at_the_width_it_learnt(strong_tiny):
    """A 6-px streak on a 300 × 200 photo reaches the model, at --scale 2, as a 150 × 100 photo whose streak
    is 3 px wide (counted by hand: the columns above half the streak's height), and at scale 1 untouched."""
    img = torch.zeros(1, 3, 300, 200)
    img[..., 100:106] = 0.8
    seen = []

    def record(x, t):
        seen.append(x[0, 0].clone())
        return x

    for scale in (2.0, 1.0):
        derain_tensor(record, strong_tiny.config, img, scale=scale)
    assert seen[0].shape == (150, 100) and seen[1].shape == (300, 200)
    assert int((seen[0][75] > 0.4).sum()) == 3 and int((seen[1][150] > 0.4).sum()) == 6


def test_scale_keeps_the_short_side_at_32_px_and_a_darken_only_model_darken_only(strong_tiny):
    seen = []
    derain_tensor(lambda x, t: seen.append(x.shape[-2:]) or x, strong_tiny.config, torch.rand(1, 3, 40, 500), scale=4.0)
    assert tuple(seen[0]) == (32, 400)
    img = torch.full((1, 3, 64, 64), 0.5)
    streak = lambda x, t: x - (torch.arange(x.shape[-1]) % 7 == 0).float() * 0.4  # sharp lines: bicubic rings
    for darken_only, brighter in ((True, False), (False, True)):
        cfg = dataclasses.replace(strong_tiny.config, darken_only=darken_only)
        assert bool((derain_tensor(streak, cfg, img, scale=2.0) > img + 1e-6).any()) == brighter


@pytest.mark.parametrize("scale", [0.5, 0, "big", float("inf"), float("nan")])
def test_a_scale_below_1_or_not_a_number_is_refused(scale):
    import derain

    with pytest.raises(DerainError, match=f"scale {scale}: give 'auto' or a factor of 1 or more"):
        derain.load(scale=scale)
