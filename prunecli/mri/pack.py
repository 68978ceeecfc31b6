"""One real tensor per slice: how reconstruction data passes through prunecli's single-input API.

Every command (tracing for Torch-Pruning, MAC counting, latency, checkpoints' `input_shape`)
works with models that take one tensor. A reconstruction net needs the measured k-space y, the
sampling mask P and the coil maps S, so they travel packed, channel-wise, as real numbers:

    channels [0, C)      Re y        (masked multi-coil k-space, zeros where not sampled)
             [C, 2C)     Im y
             [2C, 3C)    Re S        (coil sensitivity maps)
             [3C, 4C)    Im S
             [4C]        P           (1 where a k-space location is sampled, else 0)

so a slice with C coils of H×W is a [4C+1, H, W] tensor and the header's `input_shape` is
[4C+1, H, W]. Images (network outputs and targets) are [2, H, W]: real and imaginary parts.
"""

from __future__ import annotations

import torch


def pack(kspace: torch.Tensor, mask: torch.Tensor, smaps: torch.Tensor) -> torch.Tensor:
    """complex y [B,C,H,W], mask broadcastable to [B,1,H,W], complex S [B,C,H,W] → real [B,4C+1,H,W]."""
    b, _, h, w = kspace.shape
    p = mask.to(kspace.real.dtype).expand(b, 1, h, w)
    return torch.cat([kspace.real, kspace.imag, smaps.real, smaps.imag, p], dim=1)


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """real [B,4C+1,H,W] → (complex y [B,C,H,W], mask [B,1,H,W], complex S [B,C,H,W])."""
    c = (x.shape[1] - 1) // 4
    kspace = torch.complex(x[:, :c], x[:, c:2 * c])
    smaps = torch.complex(x[:, 2 * c:3 * c], x[:, 3 * c:4 * c])
    return kspace, x[:, 4 * c:4 * c + 1], smaps


def coils(input_shape) -> int:
    """The coil count of a packed input shape [4C+1, H, W]."""
    return (input_shape[0] - 1) // 4


def to_channels(image: torch.Tensor) -> torch.Tensor:
    """complex [B,H,W] → real [B,2,H,W]."""
    return torch.stack([image.real, image.imag], dim=1)


def to_complex(image: torch.Tensor) -> torch.Tensor:
    """real [B,2,H,W] → complex [B,H,W]."""
    return torch.complex(image[:, 0], image[:, 1])
