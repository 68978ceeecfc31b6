"""Reconstruction metrics follow MBDL §1.6 and agree with fastmri's where the protocols match."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunecli.engine.recon import _crop, _normalise, image_metrics, magnitude, ssim


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(2, 2, 24, 20, generator=g)
    return target + 0.1 * torch.randn(2, 2, 24, 20, generator=g), target


def test_identical_images_are_perfect():
    _, target = _images()
    m = image_metrics(target, target)
    assert torch.allclose(m["ssim"], torch.ones(2)) and torch.all(m["nmse"] == 0) and torch.all(m["psnr"] > 100)


def test_psnr_and_nmse_match_fastmri_on_the_normalised_magnitudes():
    from fastmri.evaluate import nmse, psnr

    out, target = _images(1)
    m = image_metrics(out, target)
    for i in range(2):
        a = _normalise(_crop(magnitude(out)))[i, 0].numpy().astype(np.float64)
        b = _normalise(_crop(magnitude(target)))[i, 0].numpy().astype(np.float64)
        assert m["psnr"][i].item() == pytest.approx(psnr(b[None], a[None]), rel=1e-4)  # data_range = max = 1
        assert m["nmse"][i].item() == pytest.approx(nmse(b[None], a[None]), rel=1e-4)
    assert _crop(magnitude(out)).shape[-2:] == (20, 20)  # centre crop to min(H, W)²


def test_ssim_is_symmetric_bounded_and_window_dependent():
    out, target = _images(2)
    a, b = magnitude(out), magnitude(target)
    assert ssim(a, b).item() == pytest.approx(ssim(b, a).item())
    assert -1 <= ssim(a, b).item() < 1
    assert ssim(a, b).item() != pytest.approx(ssim(a, b, 11, True).item())
