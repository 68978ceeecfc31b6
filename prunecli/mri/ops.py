"""The multi-coil MRI forward model A = P·F·S and its adjoint, with ONE FFT convention.

Park et al. (MBDL pruning, arXiv 2311.02003) simulate measurements y = P·F·S·x from a ground
truth x with a *centered, orthonormal* 2-D FFT (spec §1.1). Their own operators silently
switch to an unshifted, non-ortho FFT when a slice has exactly 12 coils (spec §1.8 gotcha 2),
so the model that generated y differs from the one a network uses. Here every caller (data
simulation, unrolled networks, losses) goes through these functions, and there is no other.

Shapes (all complex, batched, differentiable, device/dtype agnostic):

    x      image           [B, H, W]
    smaps  coil maps S     [B, C, H, W]
    y      k-space         [B, C, H, W]   (rows = readout, columns = last dim = phase encode)
    mask   sampling P      anything broadcastable after `expand_mask`: [W], [H, W], [B, H, W]
                           or [B, 1, H, W] (the packed layout's mask, see prunecli/mri/pack.py)

The centred FFT is ifftshift → fft2(norm="ortho") → fftshift over the last two dims, exactly
`fastmri.fft2c` (which works on real [..., 2] views); with norm="ortho" F is unitary, so
Fᴴ = F⁻¹ and ‖F x‖ = ‖x‖, which is what makes `adjoint` the true adjoint of `forward`.
"""

from __future__ import annotations

import torch

DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims (image → k-space, DC at [H//2, W//2])."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=DIMS), norm="ortho"), dim=DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2-D FFT over the last two dims (k-space → image); F⁻¹ = Fᴴ."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=DIMS), norm="ortho"), dim=DIMS)


def expand_mask(mask: torch.Tensor) -> torch.Tensor:
    """A mask as [B|1, 1, H|1, W] so it broadcasts over coils.

    [W] is a column pattern (phase encode), [H, W] one 2-D pattern, [B, H, W] one per slice,
    [B, 1, H, W] is already the packed layout's shape.
    """
    if mask.dim() == 1:
        return mask.view(1, 1, 1, -1)
    if mask.dim() == 2:
        return mask.view(1, 1, *mask.shape)
    if mask.dim() == 3:
        return mask.unsqueeze(1)
    return mask


def forward(x: torch.Tensor, smaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A x = P·F·S·x: complex image [B,H,W] → masked multi-coil k-space [B,C,H,W]."""
    return expand_mask(mask).to(x.real.dtype) * fft2c(smaps * x.unsqueeze(1))


def adjoint(y: torch.Tensor, smaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Aᴴ y = Σ_c conj(S_c)·F⁻¹(P y_c): k-space [B,C,H,W] → image [B,H,W] (zero-filled recon)."""
    coil_images = ifft2c(expand_mask(mask).to(y.real.dtype) * y)
    return (smaps.conj() * coil_images).sum(dim=1)


def normal(x: torch.Tensor, smaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AᴴA x (P is a 0/1 projection, so PᴴP = P and one mask application suffices)."""
    return adjoint(forward(x, smaps, mask), smaps, mask)


def coil_combine(kspace: torch.Tensor, smaps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·F⁻¹k_c of (fully sampled) k-space: the spec's ground-truth image (§1.1)."""
    return (smaps.conj() * ifft2c(kspace)).sum(dim=-3)


def rss(images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root-sum-of-squares over the coil dim: sqrt(Σ_c |I_c|²), fastMRI's `reconstruction_rss`."""
    return images.abs().pow(2).sum(dim=dim).sqrt()
