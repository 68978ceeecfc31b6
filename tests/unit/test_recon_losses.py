"""The MBDL fine-tuning objectives (spec §1.4), checked against sums written out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunecli.data import build_data
from prunecli.engine.recon import ReconLoss, rei_loss, ssim, support
from prunecli.mri import ops
from prunecli.mri.pack import to_channels, to_complex, unpack


@pytest.fixture(scope="module")
def batch():
    x, target = next(iter(build_data("phantom:n=2,val=1,size=16,coils=2").loader("train", 2)))
    g = torch.Generator().manual_seed(3)
    out = target + 0.3 * torch.randn(target.shape, generator=g)  # non-zero background too
    teacher = target + 0.2 * torch.randn(target.shape, generator=g)
    keep = support(x)
    assert 0 < keep.mean() < 1  # the phantom's coils leave a background to zero
    return x, target, out, teacher, keep


def _dc(image, x):
    """A x̂ − y by hand, as (real, imag) pairs."""
    y, mask, smaps = unpack(x)
    return torch.view_as_real(ops.forward(to_complex(image), smaps, mask)), torch.view_as_real(y)


def test_supervised_plus_distill_is_the_loss_plus_mse_to_the_teacher(batch):
    x, target, out, teacher, keep = batch
    got = ReconLoss("supervised+distill", "smoothl1")(out, target, teacher, x, None)
    sup = F.smooth_l1_loss(out * keep, target * keep)
    mse = ((out * keep - teacher * keep) ** 2).mean()
    assert got.item() == pytest.approx((sup + mse).item(), rel=1e-6)
    assert mse.item() > 1e-3 and sup.item() > 1e-3  # both terms count
    ssim_got = ReconLoss("supervised+distill", "ssim")(out, target, teacher, x, None)
    mag = lambda t: (t * keep).pow(2).sum(1, keepdim=True).clamp_min(1e-24).sqrt()  # noqa: E731
    assert ssim_got.item() == pytest.approx((1 - ssim(mag(out), mag(target)) + mse).item(), rel=1e-6)


def test_testdc_plus_distill_is_the_measurement_loss_plus_the_teacher_loss(batch):
    x, target, out, teacher, keep = batch
    got = ReconLoss("testdc+distill", "l1")(out, target, teacher, x, None)
    measured, y = _dc(out * keep, x)
    by_hand = (measured - y).abs().mean() + (out * keep - teacher * keep).abs().mean()
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    # with --loss ssim (VarNets), the measurement term is MSE, the teacher term 1 − SSIM
    got = ReconLoss("testdc+distill", "ssim")(out, target, teacher, x, None)
    mag = lambda t: (t * keep).pow(2).sum(1, keepdim=True).clamp_min(1e-24).sqrt()  # noqa: E731
    by_hand = ((measured - y) ** 2).mean() + 1 - ssim(mag(out), mag(teacher))
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_testdc_plus_distill_never_reads_the_target(batch):
    x, target, out, teacher, _ = batch
    loss = ReconLoss("testdc+distill", "smoothl1")
    nan = torch.full_like(target, float("nan"))
    assert loss(out, nan, teacher, x, None).item() == loss(out, target, teacher, x, None).item()


def test_selfsup_masks_the_background_before_the_rei_loss(batch):
    """The REI loss sees x̂ with its background zeroed, as the reference (x̂[x_gt == 0] = 0)."""
    x, target, out, teacher, keep = batch

    def model(packed):  # any reconstruction: the zero-filled image
        y, mask, smaps = unpack(packed)
        return to_channels(ops.adjoint(y, smaps, mask))

    torch.manual_seed(7)
    got = ReconLoss("selfsup", "smoothl1")(out, target, teacher, x, model)
    torch.manual_seed(7)
    masked = rei_loss(model, out * keep, x)
    torch.manual_seed(7)
    unmasked = rei_loss(model, out, x)
    assert got.item() == pytest.approx(masked.item(), rel=1e-6)
    assert abs(got.item() - unmasked.item()) > 1e-3 * unmasked.item()
