"""The VarNets of MBDL (Park et al.): fastMRI's E2E-VarNet blocks with the data's coil maps ("DU")
or with its sensitivity net (E2E-VarNet, Sriram et al. 2020). Registered in `prunecli.models.mri`.

A module of its own so that fastMRI, whose package imports pandas, requests and h5py (≈1 s), is
imported only when a VarNet is built, not by every command that lists the registry.
"""

from __future__ import annotations

import fastmri
import torch
import torch.nn as nn
from fastmri.models.varnet import NormUnet, SensitivityModel, VarNetBlock

from prunecli.mri.ops import coil_combine, fft2c, ifft2c
from prunecli.mri.pack import to_channels


def _unets_without_inplace(model: nn.Module) -> nn.Module:
    """fastMRI's ConvBlocks apply LeakyReLU in place on the InstanceNorm's output; the in-place
    rewrite hides the norm from Torch-Pruning's trace, so it would keep a stale `num_features`
    (harmless with affine=False, but PyTorch warns on every pruned forward). Same numbers, a copy more."""
    for module in model.modules():
        if isinstance(module, nn.LeakyReLU):
            module.inplace = False
    return model


def _fastmri_views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed input → fastMRI's real views: k-space and maps [B,C,H,W,2], bool mask [B,1,H,W,1]."""
    c = (x.shape[1] - 1) // 4
    kspace = torch.stack([x[:, :c], x[:, c:2 * c]], dim=-1)
    smaps = torch.stack([x[:, 2 * c:3 * c], x[:, 3 * c:4 * c]], dim=-1)
    return kspace, x[:, 4 * c:4 * c + 1, :, :, None] > 0.5, smaps


class Cascade(VarNetBlock):
    """fastMRI's `VarNetBlock` with its FFTs taken from `prunecli.mri.ops` (same parameters, same keys).

    Two reasons: one FFT convention for data and nets (spec §1.8 gotcha 2), and tracing. fastMRI's
    `fft2c` shifts with `torch.cat` along dim −2; Torch-Pruning 1.6 reads that negative dim as an
    unsigned "uninitialised" value, takes the cat for a channel concat, and fails to build the
    graph. `torch.fft.fftshift` is a roll, which it treats as element-wise.
    """

    def sens_expand(self, x: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(fft2c(torch.view_as_complex(fastmri.complex_mul(x, sens_maps))))

    def sens_reduce(self, x: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        images = torch.view_as_real(ifft2c(torch.view_as_complex(x.contiguous())))
        return fastmri.complex_mul(images, fastmri.complex_conj(sens_maps)).sum(dim=1, keepdim=True)


def _image(kspace: torch.Tensor, smaps: torch.Tensor) -> torch.Tensor:
    """Σ_c conj(S_c)·F⁻¹k_c of real views [B,C,H,W,2] → [B, 2, H, W]."""
    return to_channels(coil_combine(torch.view_as_complex(kspace.contiguous()), torch.view_as_complex(smaps)))


def _cascades(blocks: nn.ModuleList, kspace, mask, smaps) -> torch.Tensor:
    """k ← k − dc_w·P(k − y) − F S NormUnet(Σ conj(S) F⁻¹ k), from k = y, through every block."""
    current = kspace.clone()
    for block in blocks:
        current = block(current, kspace, mask, smaps)
    return current


class GivenMapsVarNet(nn.Module):
    """The MBDL "DU" net: fastMRI `VarNetBlock`s with the data's coil maps (no sensitivity net).

    fastMRI's block API is used as it is (real [..., 2] views, bool mask [B,1,H,W,1]), so the
    cascades' state dict keys are those of fastMRI's `VarNet.cascades` and load as they are.
    """

    def __init__(self, num_cascades: int = 8, chans: int = 18, pools: int = 4):
        super().__init__()
        self.cascades = nn.ModuleList([Cascade(NormUnet(chans, pools)) for _ in range(num_cascades)])
        _unets_without_inplace(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kspace, mask, smaps = _fastmri_views(x)
        return _image(_cascades(self.cascades, kspace, mask, smaps), smaps)


class E2EVarNet(nn.Module):
    """fastMRI's E2E-VarNet (Sriram et al. 2020) on the packed input, returning a complex image.

    Built from fastMRI's own `SensitivityModel`, `NormUnet` and (FFT-swapped) `VarNetBlock` under
    the names of `fastmri.models.VarNet`, so fastMRI's pretrained state dicts load unchanged.

    The packed maps are ignored: the sensitivity U-Net estimates S from the ACS lines of y.
    `fastmri.models.VarNet.forward` returns the RSS magnitude of the final coil images; we return
    Σ_c conj(Ŝ_c)·F⁻¹k̂_c with its own estimated maps Ŝ instead (the reference's E2E-VarNet also
    returns (image, maps)), so the output is the [B,2,H,W] (real, imag) every reconstruction net
    gives. Ŝ is RSS-normalised (Σ|Ŝ_c|² = 1), so where the coil images are consistent with Ŝ the
    magnitude equals fastMRI's RSS output; the phase follows Ŝ's convention, which magnitude losses
    (the reference's SSIM) and metrics do not see.

    fastMRI's sensitivity net finds the ACS width from a column mask [B,1,1,W,1]: the longest run
    of sampled columns around W//2. We give it the packed mask's central k-space row (identical to
    every row for Cartesian masks), and the cascades the full 2-D mask.
    """

    def __init__(self, num_cascades: int = 8, chans: int = 18, pools: int = 4, sens_chans: int = 8,
                 sens_pools: int = 4):
        super().__init__()
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center=True)
        self.cascades = nn.ModuleList([Cascade(NormUnet(chans, pools)) for _ in range(num_cascades)])
        _unets_without_inplace(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kspace, mask, _ = _fastmri_views(x)
        columns = mask[:, :, mask.shape[2] // 2:mask.shape[2] // 2 + 1]
        smaps = self.sens_net(kspace, columns, None)
        return _image(_cascades(self.cascades, kspace, mask, smaps), smaps)
