"""The zero-filled baseline (`zero-filled`, issue 15 item 6): Σ conj(S_c)·F⁻¹(P y_c), through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli, untrained

DATA = "phantom:n=2,val=3,size=32,coils=4"


def _numpy_zero_filled(x: torch.Tensor) -> np.ndarray:
    """Aᴴy of packed inputs [B,4C+1,H,W] with numpy's FFT (centred, orthonormal): complex [B,H,W]."""
    a = x.double().numpy()
    c = (a.shape[1] - 1) // 4
    y, s, p = a[:, :c] + 1j * a[:, c:2 * c], a[:, 2 * c:3 * c] + 1j * a[:, 3 * c:4 * c], a[:, 4 * c:4 * c + 1]
    coil = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(p * y, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return (np.conj(s) * coil).sum(1)


@pytest.fixture(scope="module")
def zf(tmp_path_factory):
    return untrained("zero-filled", tmp_path_factory.mktemp("zf") / "zf.safetensors", DATA)


def test_zero_filled_is_the_adjoint_and_exact_on_full_sampling():
    from prunecli.models import build_model
    from prunecli.mri.ops import forward
    from prunecli.mri.pack import pack, to_channels
    from prunecli.mri.phantom import phantom_set

    model, _, _ = build_model("zero-filled")
    assert sum(p.numel() for p in model.parameters()) == 0
    images, smaps = phantom_set(3, 32, 4, seed=5)
    full = torch.ones(32)
    x = pack(forward(images, smaps, full), full.view(1, 1, 1, -1), smaps)
    out = model(x)
    assert out.shape == (3, 2, 32, 32)
    # P = 1 and Σ|S_c|² = 1 on the head (0 outside, where x = 0 too): Aᴴy = x
    assert torch.allclose(out, to_channels(images), atol=1e-5)
    mask = (torch.arange(32) % 4 == 0).float()
    x = pack(forward(images, smaps, mask), mask.view(1, 1, 1, -1), smaps)
    expected = _numpy_zero_filled(x)
    assert np.allclose(model(x)[:, 0].numpy(), expected.real, atol=1e-5)
    assert np.allclose(model(x)[:, 1].numpy(), expected.imag, atol=1e-5)
    assert not torch.allclose(model(x), to_channels(images), atol=1e-2)  # undersampled: aliased


def test_evaluate_matches_a_hand_computation(zf):
    from skimage.metrics import structural_similarity

    from prunecli.data import build_data

    r = run_cli("evaluate", zf, "--data", DATA, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    got = json.loads(r.stdout)
    psnrs, ssims = [], []
    for x, target in build_data(DATA).loader("val", 8):
        recon = np.abs(_numpy_zero_filled(x))
        truth = np.abs(target[:, 0].double().numpy() + 1j * target[:, 1].double().numpy())
        for a, b in zip(recon, truth):  # §1.6: magnitude, crop min(H,W)² (square here), min–max to [0, 1]
            a, b = (a - a.min()) / (a.max() - a.min()), (b - b.min()) / (b.max() - b.min())
            psnrs.append(10 * np.log10(1 / np.mean((a - b) ** 2)))
            ssims.append(structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False))
    assert got["model"] == "zero-filled" and got["samples"] == len(psnrs) == 3
    assert got["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert got["ssim"] == pytest.approx(np.mean(ssims), abs=1e-3)
    assert 10 < got["psnr"] < 30  # R=6 aliasing: a poor but finite baseline


def test_profile_counts_nothing_and_times_it(zf):
    r = run_cli("profile", zf, "--batch-sizes", "1", "--runs", "2", "--warmup", "1", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    got = json.loads(r.stdout)
    assert got["params"] == 0 and got["macs"] == 0 and got["memory"][0]["weights_bytes"] == 0
    assert got["latency"][0]["median_ms"] > 0


def test_train_and_prune_refuse_with_one_line(zf, tmp_path):
    from prunecli.errors import UserError

    r = run_cli("train", "--model", "zero-filled", "--data", DATA, "--epochs", "1", "-o", tmp_path / "a.safetensors")
    assert isinstance(r.exception, UserError) and "no parameters" in str(r.exception)
    for method in (["--method", "l1", "--ratio", "0.5"], ["--method", "l1-unstructured", "--sparsity", "0.5"]):
        r = run_cli("prune", zf, *method, "-o", tmp_path / "p.safetensors")
        assert isinstance(r.exception, UserError) and "nothing to prune" in str(r.exception), r.output
        assert not (tmp_path / "p.safetensors").exists()


def test_evaluate_prints_a_reconstruction_table(zf):
    """Without --json, a reconstruction model's table shows PSNR/SSIM (it used to look for top-1)."""
    r = run_cli("evaluate", zf, "--data", DATA, "--device", "cpu")
    assert r.exit_code == 0, r.output + repr(r.exception)
    got = json.loads(run_cli("evaluate", zf, "--data", DATA, "--device", "cpu", "--json").stdout)
    assert "PSNR dB" in r.stdout and "SSIM" in r.stdout and f"{got['psnr']:.2f}"[:4] in r.stdout
