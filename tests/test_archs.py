"""The TTL networks: shapes, gradients, determinism, batch independence, and an attention oracle."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from derain.archs import AGLFViTBlock, create_model
from derain.config import ModelConfig, load_model_config
from derain.errors import DerainError

torch.set_num_threads(1)
TINY_FULL_RES = {**load_model_config("tiny").to_dict(), "patch_size": 1}


@pytest.mark.parametrize("config", ["tiny", TINY_FULL_RES], ids=["patch2", "patch1"])
@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (97, 131), (260, 390)])
def test_output_shapes_for_odd_sizes(config, hw):
    torch.manual_seed(0)
    net, recog = create_model(config).eval(), create_model(config, head="recog").eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y, score = net(x), recog(x)
    assert y.shape == x.shape
    assert score.shape == (2,)  # D_recog: one value per image
    assert torch.isfinite(y).all() and torch.isfinite(score).all()


def test_gradients_reach_alpha_beta_and_both_branches():
    torch.manual_seed(0)
    net = create_model("tiny")
    net(torch.rand(2, 3, 24, 40)).square().mean().backward()
    for i, block in enumerate(net.encoder.blocks):
        for name, p in [("alpha", block.alpha), ("beta", block.beta),
                        ("attn.qkv", block.attn.qkv.weight),
                        ("attn.relative_position_bias", block.attn.relative_position_bias),
                        ("local conv", block.local.body[0].weight),
                        ("local channel attention", block.local.channel_attention[0].weight)]:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"block {i}: no gradient in {name}"


def test_same_seed_same_output_and_different_seed_different_output():
    x = torch.rand(1, 3, 33, 47)
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(create_model("tiny").eval()(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


def test_eval_output_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    net = create_model("tiny").eval()
    a, b = torch.rand(1, 3, 40, 56), torch.rand(3, 3, 40, 56)
    with torch.no_grad():
        alone, batched = net(a), net(torch.cat([a, b]))[:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_tiny_encoder_with_d_dr_overfits_one_pair():
    torch.manual_seed(0)
    net = create_model("tiny")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    clean = torch.stack([0.5 + 0.3 * torch.sin(6 * xx), 0.3 + 0.4 * yy, 0.5 + 0.2 * torch.cos(5 * xx * yy)])[None]
    streaks = F.conv2d((torch.rand(1, 1, 32, 32) > 0.93).float(), torch.ones(1, 1, 7, 1) / 3, padding=(3, 0))
    rainy = (clean + 0.4 * streaks.clamp(0, 1)).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        loss = F.mse_loss(net(rainy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, f"loss only fell from {losses[0]:.4g} to {losses[-1]:.4g}"


def reference_window_attention(block: AGLFViTBlock, y: torch.Tensor) -> torch.Tensor:
    """Brute force, one query at a time: attend to keys in the same window and the same shifted
    region, never to padding; written without window_partition or masks."""
    B, H, W, C = y.shape
    w, s, attn = block.window_size, block.shift, block.attn
    heads, d = attn.num_heads, C // attn.num_heads
    Hp, Wp = math.ceil(H / w) * w, math.ceil(W / w) * w
    qkv = attn.qkv(y).view(B, H, W, 3, heads, d)
    out = torch.zeros(B, H, W, heads, d)

    def place(i, j):  # position after the cyclic shift, on the padded grid
        return (i - s) % Hp, (j - s) % Wp

    def region(r, c):  # Swin's nine regions of the shifted grid
        def band(v, n):
            return 0 if v < n - w else (1 if v < n - s else 2)
        return (band(r, Hp), band(c, Wp)) if s else (0, 0)

    keys = {}
    for i in range(H):
        for j in range(W):
            r, c = place(i, j)
            keys.setdefault((r // w, c // w, region(r, c)), []).append((i, j, r % w, c % w))
    for group in keys.values():
        idx = torch.tensor([(i, j) for i, j, _, _ in group])
        pos = torch.tensor([(a, b) for _, _, a, b in group])
        q = qkv[:, idx[:, 0], idx[:, 1], 0]  # B×n×heads×d
        k = qkv[:, idx[:, 0], idx[:, 1], 1]
        v = qkv[:, idx[:, 0], idx[:, 1], 2]
        rel = (pos[:, None] - pos[None, :]) + (w - 1)
        bias = attn.relative_position_bias[rel[..., 0] * (2 * w - 1) + rel[..., 1]]  # n×n×heads
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d) + bias.permute(2, 0, 1)
        o = torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)
        out[:, idx[:, 0], idx[:, 1]] = o
    return attn.proj(out.reshape(B, H, W, C))


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("hw", [(8, 8), (5, 11), (12, 9)])
def test_window_attention_matches_brute_force(shift, hw):
    torch.manual_seed(0)
    block = AGLFViTBlock(dim=8, num_heads=2, window_size=4, mlp_ratio=2, shift=shift).eval()
    with torch.no_grad():
        block.attn.relative_position_bias.normal_()
        y = torch.randn(2, *hw, 8)
        torch.testing.assert_close(block.global_branch(y), reference_window_attention(block, y),
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shift", [0, 2])
def test_training_attention_matches_brute_force_in_values_and_gradients(shift):
    """With gradients on, the blocks take the plain softmax form instead of SDPA: same values, same gradients."""
    torch.manual_seed(0)
    block = AGLFViTBlock(dim=8, num_heads=2, window_size=4, mlp_ratio=2, shift=shift)
    with torch.no_grad():
        block.attn.relative_position_bias.normal_()
    y = torch.randn(2, 7, 10, 8, requires_grad=True)
    grads = []
    for forward in (block.global_branch, lambda t: reference_window_attention(block, t)):
        block.zero_grad()
        y.grad = None
        out = forward(y)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), y.grad.clone(), block.attn.relative_position_bias.grad.clone(),
                      block.attn.qkv.weight.grad.clone()))
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-4)


def test_unknown_config_key_is_a_clear_error():
    with pytest.raises(DerainError, match="unknown key.*widht"):
        ModelConfig.from_dict({"widht": 32})
    with pytest.raises(DerainError, match="not divisible"):
        ModelConfig(dim=30, num_heads=4)
    with pytest.raises(DerainError, match="streak_level must be >= 0"):
        ModelConfig(streak_level=-1)


def test_yaml_config_and_training_config_with_model_section(tmp_path):
    (tmp_path / "m.yaml").write_text("dim: 24\nnum_heads: 3\ndepth: 1\n")
    (tmp_path / "train.yaml").write_text("model: tiny\nstages: {}\n")
    assert load_model_config(tmp_path / "m.yaml").dim == 24
    assert load_model_config(str(tmp_path / "train.yaml")) == load_model_config("tiny")


@pytest.mark.parametrize("se_window", [0, 5])
def test_local_branch_equals_textbook_order_pool_after_expand(se_window):
    """The local branch pools the hidden features; by linearity this must equal SE on the expanded ones."""
    from derain.archs.aglf_vit import LocalBranch, box_mean

    torch.manual_seed(0)
    branch = LocalBranch(dim=16, reduction=4, se_window=se_window).eval()
    x = torch.randn(2, 16, 9, 14)
    with torch.no_grad():
        features = branch.expand(branch.body(x))
        textbook = features * branch.channel_attention(box_mean(features, se_window))
        torch.testing.assert_close(branch(x), textbook, atol=1e-5, rtol=1e-5)


def test_box_mean_matches_a_brute_force_neighbourhood_average():
    from derain.archs.aglf_vit import box_mean

    x = torch.randn(1, 2, 6, 9)
    k, r = 5, 2
    expected = torch.zeros_like(x)
    for i in range(6):
        for j in range(9):
            expected[..., i, j] = x[..., max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean((-1, -2))
    torch.testing.assert_close(box_mean(x, k), expected)
    torch.testing.assert_close(box_mean(x, 0), x.mean((2, 3), keepdim=True))


def test_both_box_mean_paths_match_the_brute_force_average_and_the_side_picks_the_path(monkeypatch):
    """Band matrices (sides up to BAND_MAX, or NARROW_BAND_MAX for a few channels) and pooling (longer
    sides) compute the same border-aware mean, and a channels-last input keeps its layout."""
    from derain.archs import aglf_vit

    x = torch.randn(2, 3, 11, 7, dtype=torch.float64)
    k, r = 7, 3
    expected = torch.zeros_like(x)
    for i in range(11):
        for j in range(7):
            expected[..., i, j] = x[..., max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean((-1, -2))
    torch.testing.assert_close(aglf_vit.band_box_mean(x, k), expected)
    channels_last = aglf_vit.band_box_mean(x.contiguous(memory_format=torch.channels_last), k)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)  # the layout the convs run in
    torch.testing.assert_close(channels_last, expected)
    torch.testing.assert_close(aglf_vit.pooled_box_mean(x, k), expected)
    # the SE's few channels, channels-last, on a side past BAND_MAX: banded on an NCHW copy
    narrow = torch.randn(1, aglf_vit.NARROW, 9, aglf_vit.NARROW_BAND_MAX, dtype=torch.float64)
    narrow = narrow.contiguous(memory_format=torch.channels_last)
    pooled = aglf_vit.pooled_box_mean(narrow, 31)
    calls = []
    monkeypatch.setattr(aglf_vit, "pooled_box_mean", lambda t, k: calls.append(tuple(t.shape[-3:])) or t)
    banded = aglf_vit.box_mean(narrow, 31)
    assert banded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(banded, pooled)
    wide = aglf_vit.NARROW + 1
    aglf_vit.box_mean(torch.zeros(1, wide, 4, aglf_vit.BAND_MAX), 5)
    aglf_vit.box_mean(torch.zeros(1, wide, 4, aglf_vit.BAND_MAX + 1), 5)
    aglf_vit.box_mean(torch.zeros(1, aglf_vit.NARROW, 4, aglf_vit.NARROW_BAND_MAX + 1), 5)
    assert calls == [(wide, 4, aglf_vit.BAND_MAX + 1), (aglf_vit.NARROW, 4, aglf_vit.NARROW_BAND_MAX + 1)]


def textbook_local_branch(branch, x: torch.Tensor) -> torch.Tensor:
    from derain.archs.aglf_vit import box_mean

    features = branch.expand(branch.body(x))
    return features * branch.channel_attention(box_mean(features, branch.se_window))


def reference_encoder(encoder, img: torch.Tensor) -> torch.Tensor:
    """Encoder.forward written plainly: brute-force window attention, SE in textbook order,
    no layout or fusion tricks. The speed work must leave the output equal to this."""
    from derain.archs.encoder import pad_to_multiple

    x = pad_to_multiple(img, encoder.patch_size)
    x = F.pixel_unshuffle(x, encoder.patch_size) if encoder.patch_size > 1 else x
    x = encoder.spatial_attention(encoder.stem(x))
    t = x.permute(0, 2, 3, 1)
    for block in encoder.blocks:
        y = block.norm1(t)
        local = textbook_local_branch(block.local, y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        t = t + block.alpha * reference_window_attention(block, y) + block.beta * local
        t = t + block.mlp(block.norm2(t))
    return x + encoder.fuse(encoder.norm(t).permute(0, 3, 1, 2))


@pytest.mark.parametrize("config", ["default", TINY_FULL_RES], ids=["default", "patch1"])
def test_fast_inference_path_equals_the_plain_reference(config):
    torch.manual_seed(0)
    net = create_model(config).eval()
    with torch.no_grad():
        for block in net.encoder.blocks:  # weights unlike the init, so every branch counts
            block.alpha.uniform_(0.5, 1.5)
            block.beta.uniform_(0.5, 1.5)
            block.attn.relative_position_bias.normal_()
        img = torch.rand(2, 3, 70, 90)
        expected = net.decoder(reference_encoder(net.encoder, img), img)
        torch.testing.assert_close(net(img), expected, atol=1e-4, rtol=0)


def test_darken_only_is_the_signed_output_capped_at_the_input():
    """darken_only = min(the same weights' signed output, the input), pixel by pixel; random weights
    large enough that the signed net brightens many pixels, so the cap has work to do."""
    torch.manual_seed(0)
    signed = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4}).eval()
    with torch.no_grad():
        for p in signed.parameters():
            p.normal_(0, 0.3)
    capped = create_model({**signed.config.to_dict(), "darken_only": True}).eval()
    capped.load_state_dict(signed.state_dict())
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        y, reference = capped(x), signed(x)
    assert (reference > x).float().mean() > 0.2
    torch.testing.assert_close(y, torch.minimum(reference, x))


@pytest.mark.parametrize("darken_only", [False, True])
def test_shrink_soft_thresholds_the_residual(darken_only):
    """shrink = t: the residual r (signed output - input) becomes sign(r)·max(|r| - t, 0), then capped at 0
    under darken_only; a numpy oracle on the same weights' signed output."""
    torch.manual_seed(1)
    signed = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4}).eval()
    with torch.no_grad():
        for p in signed.parameters():
            p.normal_(0, 0.05)
    t = 0.02
    shrunk = create_model({**signed.config.to_dict(), "darken_only": darken_only, "shrink": t}).eval()
    shrunk.load_state_dict(signed.state_dict())
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        y, reference = shrunk(x).numpy(), signed(x).numpy()
    r = reference - x.numpy()
    assert 0.2 < (np.abs(r) < t).mean() < 0.8  # both sides of the threshold are exercised
    expected_r = np.sign(r) * np.maximum(np.abs(r) - t, 0)
    if darken_only:
        expected_r = np.minimum(expected_r, 0)
    np.testing.assert_allclose(y, x.numpy() + expected_r, atol=1e-6)


def test_shrink_jitter_draws_one_threshold_per_sample_in_training_only():
    """shrink_jitter = j: in training each sample's residual is soft-thresholded at its own t_i in
    t·[1 − j, 1 + j] (recovered from the output and checked against the numpy oracle); eval keeps t."""
    torch.manual_seed(2)
    signed = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4})
    with torch.no_grad():
        for p in signed.parameters():
            p.normal_(0, 0.05)
    t = 0.02
    shrunk = create_model({**signed.config.to_dict(), "shrink": t})
    shrunk.load_state_dict(signed.state_dict())
    shrunk.decoder.shrink_jitter = 0.5
    x = torch.rand(4, 3, 40, 56)
    with torch.no_grad():
        y, reference = shrunk.train()(x).numpy(), signed.train()(x).numpy()
        y_eval = shrunk.eval()(x).numpy()
    r, change = reference - x.numpy(), y - x.numpy()
    thresholds = []
    for r_i, c_i in zip(r, change):
        moved = np.abs(c_i) > 1e-4
        t_i = np.median(np.abs(r_i[moved]) - np.abs(c_i[moved]))
        np.testing.assert_allclose(c_i, np.sign(r_i) * np.maximum(np.abs(r_i) - t_i, 0), atol=1e-5)
        thresholds.append(t_i)
    assert all(0.5 * t - 1e-6 <= t_i <= 1.5 * t + 1e-6 for t_i in thresholds)
    assert np.ptp(thresholds) > 0.1 * t  # drawn per sample, not once per batch
    np.testing.assert_allclose(y_eval - x.numpy(), np.sign(r) * np.maximum(np.abs(r) - t, 0), atol=1e-5)


def test_shrink_jitter_draws_a_threshold_map_per_sample_too():
    """With a threshold per pixel, training draws one factor per sample, the same over its map: the numpy
    oracle rebuilds each sample's output from the raw residual and the map times that factor."""
    torch.manual_seed(3)
    signed = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4})
    with torch.no_grad():
        for p in signed.parameters():
            p.normal_(0, 0.05)
    shrunk = create_model({**signed.config.to_dict(), "shrink": 0.03})
    shrunk.load_state_dict(signed.state_dict())
    shrunk.decoder.shrink_jitter = 0.5
    x = torch.rand(3, 3, 40, 56)
    threshold = torch.where(torch.rand(3, 1, 40, 56) > 0.5, 0.01, 0.03)
    with torch.no_grad():
        r = signed.train()(x).numpy() - x.numpy()
        torch.manual_seed(9)
        change = shrunk.train()(x, threshold).numpy() - x.numpy()
        torch.manual_seed(9)
        factors = 1 + 0.5 * (torch.rand(3, 1, 1, 1) * 2 - 1)
    t = (threshold * factors).numpy()
    np.testing.assert_allclose(change, np.sign(r) * np.maximum(np.abs(r) - t, 0), atol=1e-5)
    assert np.ptp(factors.numpy()) > 0.05


def test_shrink_out_of_range_is_a_clear_error():
    with pytest.raises(DerainError, match="shrink must be in"):
        load_model_config({**load_model_config("tiny").to_dict(), "shrink": -0.1})


@pytest.mark.parametrize("context, reach", [(0, 5), (4, 18)])
def test_the_detail_path_sees_the_image_as_far_as_its_kernels_reach(context, reach):
    """Hand count of the full-resolution reach from the image: the image branch's two 3×3 convs (2 px), or the
    context branch's 3×3 convs at dilations 1, 2, 4, 8 (15 px; its 1×1 out conv adds none), then the two fusion
    convs and the output conv (3 px). The gradient of one output pixel is non-zero exactly that far."""
    torch.manual_seed(0)
    net = create_model({**load_model_config("tiny").to_dict(), "detail_dim": 4, "context_dim": context})
    fusion = net.decoder.detail
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_(0, 0.5)
    img = torch.rand(1, 3, 64, 64, requires_grad=True)
    fusion(torch.rand(1, 4, 64, 64), img)[0, :, 32, 32].sum().backward()
    rows, cols = np.nonzero(img.grad[0].abs().sum(0).numpy())
    assert rows.min() == cols.min() == 32 - reach and rows.max() == cols.max() == 32 + reach


def test_a_context_branch_needs_the_detail_path():
    with pytest.raises(DerainError, match="context_dim=8 needs detail_dim"):
        load_model_config({**load_model_config("tiny").to_dict(), "context_dim": 8})
