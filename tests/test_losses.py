"""Each loss of the paper (Eq. 1-5) against a value worked out by hand on small tensors."""
import pytest
import torch

from derain.losses import kd_direct_loss, kd_indirect_loss, kd_loss, lowfreq_loss, rain_pixel_loss, recog_loss, recon_loss, restoration_loss


def test_recog_loss_is_the_mean_squared_error_to_the_labels():
    scores, labels = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([0.0, 1.0, 1.0])
    # ((0.5 - 0)² + (2 - 1)² + (1 - 1)²) / 3 = 1.25 / 3
    assert recog_loss(scores, labels).item() == pytest.approx(1.25 / 3)


def test_recon_loss_adds_the_image_and_gradient_errors():
    output = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros_like(output)
    # image: (1 + 4 + 9 + 16) / 4 = 7.5; horizontal differences (1, 1): 1; vertical (2, 2): 4
    assert recon_loss(output, target).item() == pytest.approx(7.5 + 1.0 + 4.0)


def test_recon_loss_of_a_constant_shift_has_no_gradient_term():
    target = torch.rand(2, 3, 5, 6)
    assert recon_loss(target + 0.5, target).item() == pytest.approx(0.25)
    assert recon_loss(target, target).item() == 0.0


def test_lowfreq_loss_is_the_error_of_the_block_means():
    output, target = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
    blocks = lambda x: x.reshape(2, 3, 2, 8, 3, 8).mean(dim=(3, 5))  # 8×8 block means, by reshaping
    assert lowfreq_loss(output, target).item() == pytest.approx(((blocks(output) - blocks(target)) ** 2).mean().item())


def test_lowfreq_loss_weighs_a_shift_fully_and_a_thin_line_little():
    target = torch.zeros(1, 1, 8, 8)
    assert lowfreq_loss(target + 0.1, target).item() == pytest.approx(0.01, rel=1e-5)  # δ² for a uniform shift δ
    line = target.clone()
    line[..., 3, :] = 0.5  # per-pixel MSE 0.25 / 8; block mean 0.5 / 8, squared
    assert lowfreq_loss(line, target).item() == pytest.approx(0.25 / 64, rel=1e-5)


def test_restoration_loss_adds_the_weighted_lowfreq_term_to_eq_2():
    output, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert restoration_loss(output, target).item() == recon_loss(output, target).item()
    expected = recon_loss(output, target) + 4 * lowfreq_loss(output, target, 4)
    assert restoration_loss(output, target, lowfreq=4, size=4).item() == pytest.approx(expected.item())


def test_rain_pixel_loss_counts_only_the_pixels_the_rain_lifts():
    target = torch.full((1, 3, 2, 2), 0.5)
    inputs = target.clone()
    inputs[0, 1, 0, 0] += 0.2  # rain in one channel of one pixel: the pixel is the rain's
    inputs[0, :, 1, 1] += 0.01  # below the level: not the rain's
    output = target + 0.1  # every pixel off by 0.1 in every channel
    # one pixel of four is rain: its 3 channels × 0.01 over the 12 elements
    assert rain_pixel_loss(output, target, inputs, level=0.05).item() == pytest.approx(3 * 0.01 / 12)
    assert rain_pixel_loss(output, target, inputs, level=0.005).item() == pytest.approx(6 * 0.01 / 12)
    expected = recon_loss(output, target) + 2 * 3 * 0.01 / 12
    assert restoration_loss(output, target, inputs=inputs, rain_weight=2, rain_level=0.05).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="needs the rainy inputs"):
        restoration_loss(output, target, rain_weight=2)


def test_direct_matching_sums_one_error_per_teacher():
    student = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0])]
    teachers = [torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])]
    # recog: (1 + 1) / 2 = 1; recon: (0 + 4) / 2 = 2
    assert kd_direct_loss(student, teachers).item() == pytest.approx(3.0)
    assert kd_direct_loss(student[:1], teachers[:1]).item() == pytest.approx(1.0)  # one teacher (Table 3)


def test_indirect_matching_compares_decoder_outputs():
    student_scores, teacher_scores = torch.tensor([0.2, 0.8]), torch.tensor([0.0, 1.0])  # D_recog
    student_image, teacher_image = torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2)  # D_recon
    # (0.04 + 0.04) / 2 = 0.04, plus 0.25
    loss = kd_indirect_loss([student_scores, student_image], [teacher_scores, teacher_image])
    assert loss.item() == pytest.approx(0.04 + 0.25)


def test_kd_loss_adds_direct_and_indirect():
    assert kd_loss(torch.tensor(1.5), torch.tensor(0.25)).item() == pytest.approx(1.75)


def test_mismatched_teacher_lists_are_refused():
    with pytest.raises(ValueError, match="one student tensor per teacher"):
        kd_direct_loss([torch.zeros(1)], [torch.zeros(1), torch.zeros(1)])
