"""Multi-coil MRI reconstruction nets of the MBDL pruning study (Park et al., arXiv 2311.02003).

Park et al. prune model-based deep learning (MBDL) nets, which alternate a physics step with the
measurement operator A = P·F·S and a learned CNN prior, and show that pruning the prior speeds up
reconstruction. The three nets of their study (spec §1.2):

- `deq-edsr`: a deep equilibrium model (Bai et al., NeurIPS 2019): the image is the fixed point
  z = T(z) of one gradient step on ‖Az − y‖² followed by an EDSR prior (Lim et al., CVPR-W 2017),
  found by Anderson acceleration without gradients, then trained through ONE more application of
  T (Jacobian-free backprop, Fung et al., AAAI 2022), so memory does not grow with iterations.
- `varnet` ("DU", deep unfolding): 8 cascades of the E2E-VarNet block (Sriram et al., MICCAI
  2020), each a soft data-consistency step plus a normalised U-Net, using the coil maps S that
  come with the data (no sensitivity net).
- `e2e-varnet`: fastMRI's `VarNet`, which estimates S itself from the ACS lines.

All take prunecli's packed input x [B, 4C+1, H, W] (`prunecli.mri.pack`: k-space y, maps S,
mask P) and return the complex image as [B, 2, H, W] (real, imaginary); they are size- and
coil-count-agnostic, the registry's `input_shape` only sets the tracing/profiling example.

Pruning protects every conv whose OUTPUT is the 2-channel image (spec §1.8 gotcha 7: pruning a
→2 conv to 1 channel breaks the real/imag layout; the reference only protected the very last
module) and, for E2E-VarNet, the whole sensitivity net, which the reference never prunes
(spec §1.3). Convs reading the 2-channel image (EDSR head, U-Net stems) stay prunable: their
input channels are the image, never cut, and protecting the EDSR head would freeze the whole
residual trunk it is coupled with.

Torch-Pruning traces these nets through autograd: the DEQ's solve runs without gradients, so its
graph is the single last T (the EDSR once); the VarNets' complex algebra shows up as element-wise
and reshape nodes (harmless, though its shape inference warns "Maximum recursive depth reached"
on the long chains between cascades). Two fixes keep the trace sound, see `Cascade` and
`_unets_without_inplace` in prunecli/models/varnet.py (fastMRI's blocks, imported only when built). MAC counters that hook module calls see every DEQ solver iteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from prunecli.models import register_model
from prunecli.mri.anderson import anderson
from prunecli.mri.ops import adjoint, forward
from prunecli.mri.pack import to_channels, to_complex, unpack

if TYPE_CHECKING:
    from prunecli.models.varnet import E2EVarNet, GivenMapsVarNet

FULL_SHAPE = (65, 320, 320)  # 16 coils, 320×320: a typical fastMRI brain slice (4–20 coils occur)
TINY_SHAPE = (17, 32, 32)  # 4 coils, 32×32: CPU tests
UNET_OUT = "cascades.*.model.unet.up_conv.?.1"
"""Each cascade's NormUnet ends with `up_conv[-1] = Sequential(ConvBlock, Conv2d(chans, 2, 1))`;
`?` (one character) keeps the glob off `up_conv.<i>.layers.1` (InstanceNorms inside ConvBlocks)."""


# ---------------------------------------------------------------- DEQ with an EDSR prior


class ResBlock(nn.Module):
    """EDSR residual block conv–ReLU–conv (no BN: Lim et al. found BN hurts restoration)."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


class EDSR(nn.Module):
    """EDSR without upsampling on (real, imag): head 2→C, blocks, body-end conv, global skip, tail C→2.

    Module names (`head.0`, `body.<i>.body.0`, `tail.0`) follow the reference so its state dicts map
    one to one (wustl-cig/MBDL_Pruning `torch_util/module.py`).
    """

    def __init__(self, channels: int = 64, blocks: int = 13, res_scale: float = 1.0):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(2, channels, 3, padding=1))
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.tail = nn.Sequential(nn.Conv2d(channels, 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(self.body(x) + x)


class DEQ(nn.Module):
    """z* = T(z*), T(z) = α·EDSR(z⁺) + (1−α)·z⁺ with z⁺ = z − γ·Aᴴ(Az − y), from z₀ = Aᴴy.

    γ and α are trainable (the reference's `trainable_parameter: true`); its config starts them
    at 5.0 and 0.2 and a trained checkpoint overrides both. `tol`, `max_iter`, `m`, `lam` and
    `relative_lam` are plain attributes so a loaded (e.g. pruned) model can be re-run at another
    tolerance: the reference runs pruned DEQs at tol 4e-3 against 1e-4 for the baseline (spec §1.8
    gotcha 3), so iterations must be reported. `last_iterations` / `last_residual` hold the last
    solve's evaluations of T (not counting the final one with gradients) and worst residual.
    """

    def __init__(self, channels: int = 64, blocks: int = 13, m: int = 5, tol: float = 1e-4,
                 max_iter: int = 100, gamma: float = 5.0, alpha: float = 0.2, lam: float = 1e-4,
                 relative_lam: bool = False):
        super().__init__()
        self.prior = EDSR(channels, blocks)
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.m, self.tol, self.max_iter, self.lam, self.relative_lam = m, tol, max_iter, lam, relative_lam
        self.last_iterations, self.last_residual = 0, float("nan")

    def step(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, smaps: torch.Tensor) -> torch.Tensor:
        """One application of T on a real [B, 2, H, W] image."""
        gradient = adjoint(forward(to_complex(z), smaps, mask) - y, smaps, mask)
        z = z - self.gamma * to_channels(gradient)
        return self.alpha * self.prior(z) + (1 - self.alpha) * z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, mask, smaps = unpack(x)
        z0 = to_channels(adjoint(y, smaps, mask))
        with torch.no_grad():
            z, info = anderson(lambda z: self.step(z, y, mask, smaps), z0, m=self.m, lam=self.lam,
                               max_iter=self.max_iter, tol=self.tol, relative_lam=self.relative_lam)
        self.last_iterations, self.last_residual = info["iterations"], info["residual"]
        return self.step(z, y, mask, smaps)


# ---------------------------------------------------------------- zero-filled baseline


class ZeroFilled(nn.Module):
    """x̂ = Aᴴy = Σ_c conj(S_c)·F⁻¹(P y_c): the zero-filled reconstruction every MRI paper reports
    as its baseline row. No parameters, so `evaluate` and `profile` give the baseline with the
    same protocol as the nets; on fully sampled data (P = 1) it is exactly the ground truth
    Σ conj(S_c)·F⁻¹k_c, and it equals the DEQ's starting point z₀."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, mask, smaps = unpack(x)
        return to_channels(adjoint(y, smaps, mask))


# ---------------------------------------------------------------- registry

_DEQ = "DEQ (Anderson, JFB) with an EDSR prior"


@register_model("deq-edsr", family="mri", task="reconstruction", input_shape=FULL_SHAPE,
                protected=("prior.tail.0",),
                description=f"{_DEQ}: 64 ch, 13 blocks, tol 1e-4, ≤100 iterations (Park et al.)",
                defaults={"channels": 64, "blocks": 13, "m": 5, "tol": 1e-4, "max_iter": 100, "gamma": 5.0,
                          "alpha": 0.2})
def deq_edsr(**kwargs) -> DEQ:
    return DEQ(**kwargs)


@register_model("deq-edsr-tiny", family="mri", task="reconstruction", input_shape=TINY_SHAPE,
                protected=("prior.tail.0",), tiny=True,
                description=f"tiny {_DEQ}: 16 ch, 2 blocks, ≤20 iterations, 4 coils 32×32, for tests",
                defaults={"channels": 16, "blocks": 2, "m": 5, "tol": 1e-4, "max_iter": 20, "gamma": 5.0,
                          "alpha": 0.2})
def deq_edsr_tiny(**kwargs) -> DEQ:
    return DEQ(**kwargs)


@register_model("varnet", family="mri", task="reconstruction", input_shape=FULL_SHAPE, protected=(UNET_OUT,),
                description="VarNet / DU: 8 E2E-VarNet cascades (NormUnet 18 ch, 4 pools), given coil maps",
                defaults={"num_cascades": 8, "chans": 18, "pools": 4})
def varnet(**kwargs) -> GivenMapsVarNet:
    from prunecli.models.varnet import GivenMapsVarNet

    return GivenMapsVarNet(**kwargs)


@register_model("varnet-tiny", family="mri", task="reconstruction", input_shape=TINY_SHAPE,
                protected=(UNET_OUT,), tiny=True,
                description="tiny VarNet / DU: 2 cascades, NormUnet 4 ch, 2 pools, for tests",
                defaults={"num_cascades": 2, "chans": 4, "pools": 2})
def varnet_tiny(**kwargs) -> GivenMapsVarNet:
    from prunecli.models.varnet import GivenMapsVarNet

    return GivenMapsVarNet(**kwargs)


_E2E_PROTECTED = (UNET_OUT, "sens_net*")


@register_model("e2e-varnet", family="mri", task="reconstruction", input_shape=FULL_SHAPE,
                protected=_E2E_PROTECTED,
                description="E2E-VarNet: 8 cascades (18 ch, 4 pools) + sensitivity U-Net (8 ch, 4 pools)",
                defaults={"num_cascades": 8, "chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4})
def e2e_varnet(**kwargs) -> E2EVarNet:
    from prunecli.models.varnet import E2EVarNet

    return E2EVarNet(**kwargs)


@register_model("e2e-varnet-tiny", family="mri", task="reconstruction", input_shape=TINY_SHAPE,
                protected=_E2E_PROTECTED, tiny=True,
                description="tiny E2E-VarNet: 2 cascades (4 ch, 2 pools) + sensitivity U-Net (4 ch, 2 pools)",
                defaults={"num_cascades": 2, "chans": 4, "pools": 2, "sens_chans": 4, "sens_pools": 2})
def e2e_varnet_tiny(**kwargs) -> E2EVarNet:
    from prunecli.models.varnet import E2EVarNet

    return E2EVarNet(**kwargs)


@register_model("zero-filled", family="mri", task="reconstruction", input_shape=FULL_SHAPE, protected=(),
                description="zero-filled baseline Σ conj(S)·F⁻¹y: no parameters, nothing to train or prune")
def zero_filled() -> ZeroFilled:
    return ZeroFilled()
