"""ESPIRiT coil maps (`maps=espirit`, issue 15 item 5): sigpy's EspiritCalib on fully sampled k-space."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from prunecli.mri import ops
from prunecli.mri.coils import espirit_maps
from prunecli.mri.phantom import phantom_slice

PROJECTION_TOL = 0.03  # measured 0.0060–0.0074 on these three phantoms (relative phases: 0.0061–0.0070)
MAGNITUDE_TOL = 0.02  # measured 0.0027–0.0042


def _projector(maps: torch.Tensor) -> torch.Tensor:
    """Per-pixel S·Sᴴ [C, C, H, W]: blind to ESPIRiT's per-pixel phase (S and e^{iφ}S give the same)."""
    return torch.einsum("chw,dhw->cdhw", maps, maps.conj())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_espirit_recovers_known_smooth_maps_up_to_a_per_pixel_phase(seed):
    image, truth = phantom_slice(64, 4, seed)
    head = truth.abs().pow(2).sum(0) > 0.5  # Σ|S_c|² = 1 on the head, 0 outside
    maps = espirit_maps(ops.fft2c(truth * image))
    assert maps.shape == truth.shape and maps.dtype == torch.complex64
    p, q = _projector(maps)[..., head], _projector(truth)[..., head]
    projection_error = ((p - q).norm() / q.norm()).item()  # normalised Frobenius error of S·Sᴴ on the head
    magnitude_error = ((maps.abs() - truth.abs())[:, head].norm() / truth.abs()[:, head].norm()).item()
    assert projection_error < PROJECTION_TOL, projection_error
    assert magnitude_error < MAGNITUDE_TOL, magnitude_error
    # relative coil phases: S_c·conj(S_0) agree (the global/per-pixel phase cancels)
    rel, rel_truth = maps * maps[0].conj(), truth * truth[0].conj()
    assert ((rel - rel_truth)[:, head].norm() / rel_truth[:, head].norm()).item() < PROJECTION_TOL
    # unit-norm eigenvectors where kept: Σ_c|S_c|² is 1 on the head
    assert torch.allclose(maps.abs().pow(2).sum(0)[head], torch.ones(int(head.sum())), atol=1e-4)


def test_fastmri_maps_espirit_gives_a_ground_truth_consistent_with_the_data(tmp_path):
    """A fastMRI-layout file whose own `sens_maps` are ignored: maps and x come from ESPIRiT on the
    fully sampled k-space (÷ max|k|), x = Σ conj(S_c)·F⁻¹k_c, and |x| equals the coil images' RSS."""
    from sigpy.mri.app import EspiritCalib

    from prunecli.data import build_data
    from prunecli.mri.pack import unpack

    pairs = [phantom_slice(48, 4, 10 + s) for s in range(2)]
    kspace = torch.stack([ops.fft2c(maps * image) for image, maps in pairs]) * 3e-5
    folder = tmp_path / "fm"
    folder.mkdir()
    with h5py.File(folder / "a.h5", "w") as f:
        f.create_dataset("kspace", data=kspace.numpy())
        f.create_dataset("sens_maps", data=torch.ones_like(kspace).numpy())  # wrong on purpose: must be ignored
    x, target = next(iter(build_data(f"fastmri:{folder}?maps=espirit").loader("train", 2)))
    _, _, packed_maps = unpack(x)
    for i in range(2):
        k = kspace[i].numpy() / np.abs(kspace[i].numpy()).max()
        want = EspiritCalib(k, calib_width=24, show_pbar=False).run()
        assert np.allclose(packed_maps[i].numpy(), want, atol=1e-5)
        coil = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        x_gt = (np.conj(want) * coil).sum(0)
        assert np.allclose(target[i, 0].numpy(), x_gt.real, atol=1e-5)
        assert np.allclose(target[i, 1].numpy(), x_gt.imag, atol=1e-5)
        rss = np.sqrt((np.abs(coil) ** 2).sum(0))
        kept = (np.abs(want) ** 2).sum(0) > 0.5
        assert np.linalg.norm((np.abs(x_gt) - rss)[kept]) / np.linalg.norm(rss[kept]) < 0.01
    auto = next(iter(build_data(f"fastmri:{folder}").loader("train", 2)))[1]  # maps=auto reads the file's maps
    assert not torch.allclose(auto, target, atol=1e-3)
