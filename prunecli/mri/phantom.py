"""Random Shepp–Logan-like phantoms and smooth simulated coil maps, for an offline MRI data set.

fastMRI brain data cannot ship with prunecli, yet tests, tutorials and the MBDL pipeline
(Park et al.; spec §1) need multi-coil slices with a known ground truth. A phantom is a head
ellipse ("skull", intensity 1), a slightly smaller brain ellipse that lowers the inside to
0.2–0.4, and K − 2 random interior ellipses with random (possibly negative) intensities; the
magnitude is clipped at 0 and multiplied by a smooth random phase (real MR images are complex).

Coil maps are Gaussian bumps centred on a ring just outside the field of view (like a head
array), each with its own linear phase, normalised so Σ_c |S_c|² = 1 on the head and set to 0
outside it: the same convention as the ACS maps of `prunecli.mri.coils`, so AᴴA x = x for a
full mask. Everything is drawn from one `torch.Generator`, so a seed fixes a sample.
"""

from __future__ import annotations

import math

import torch


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y, X) pixel-centre coordinates in (−1, 1), each [size, size]."""
    axis = (torch.arange(size) + 0.5) / size * 2 - 1
    return torch.meshgrid(axis, axis, indexing="ij")


def uniform(gen: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def ellipse(yy, xx, cy, cx, ry, rx, angle) -> torch.Tensor:
    """Bool mask of one rotated ellipse (centre cy, cx; semi-axes ry, rx; angle in radians)."""
    cos, sin = math.cos(angle), math.sin(angle)
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1


def smooth_phase(yy, xx, gen: torch.Generator, amplitude: float) -> torch.Tensor:
    """A random low-order polynomial phase in [−amplitude, amplitude]-ish (radians)."""
    c = uniform(gen, -1, 1, 4)
    return amplitude * (c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * (xx**2 - yy**2)) / 2


def ellipse_phantom(size: int, gen: torch.Generator, ellipses: int = 10,
                    phase: float = math.pi / 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(complex64 image [size, size], bool head support [size, size]); `phase` = 0 gives a real image."""
    yy, xx = grid(size)
    cy, cx = uniform(gen, -0.05, 0.05, 2).tolist()
    ry, rx = uniform(gen, 0.80, 0.92).item(), uniform(gen, 0.62, 0.82).item()
    angle = uniform(gen, -0.3, 0.3).item()
    head = ellipse(yy, xx, cy, cx, ry, rx, angle)
    shrink = uniform(gen, 0.86, 0.93).item()
    image = head.float() - uniform(gen, 0.6, 0.8).item() * ellipse(yy, xx, cy, cx, ry * shrink, rx * shrink, angle)
    for _ in range(max(ellipses - 2, 0)):
        oy, ox = (uniform(gen, -0.55, 0.55, 2) * torch.tensor([ry, rx])).tolist()
        ay, ax = uniform(gen, 0.04, 0.3, 2).tolist()
        blob = ellipse(yy, xx, cy + oy, cx + ox, ay, ax, uniform(gen, 0, math.pi).item())
        image = image + uniform(gen, -0.3, 0.5).item() * (blob & head)
    magnitude = image.clamp_min(0) * head
    return torch.polar(magnitude, smooth_phase(yy, xx, gen, phase)).to(torch.complex64), head


def coil_maps(size: int, coils: int, gen: torch.Generator, support: torch.Tensor | None = None) -> torch.Tensor:
    """complex64 [coils, size, size]: Gaussian bumps on a ring of radius ≈1.2, linear phases,
    normalised to Σ_c |S_c|² = 1 everywhere, then zeroed outside `support` (if given)."""
    yy, xx = grid(size)
    maps = []
    for c in range(coils):
        theta = 2 * math.pi * c / coils + uniform(gen, -0.3, 0.3).item()
        radius, sigma = uniform(gen, 1.1, 1.3).item(), uniform(gen, 0.6, 0.9).item()
        dist2 = (yy - radius * math.sin(theta)) ** 2 + (xx - radius * math.cos(theta)) ** 2
        slope = uniform(gen, -1.5, 1.5, 3)
        maps.append(torch.polar(torch.exp(-dist2 / (2 * sigma**2)), slope[0] * xx + slope[1] * yy + slope[2] * math.pi))
    smaps = torch.stack(maps)
    smaps = smaps / smaps.abs().pow(2).sum(0).sqrt()
    if support is not None:
        smaps = smaps * support
    return smaps.to(torch.complex64)


def phantom_slice(size: int, coils: int, seed: int, ellipses: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(image [size, size], maps [coils, size, size]) for one seed; maps vanish outside the head."""
    gen = torch.Generator().manual_seed(seed)
    image, head = ellipse_phantom(size, gen, ellipses)
    return image, coil_maps(size, coils, gen, head)


def phantom_set(count: int, size: int, coils: int, seed: int = 0, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [count, size, size], maps [count, coils, size, size]); sample i uses seed
    (seed, start + i) only, so a sample never depends on how many others are drawn."""
    pairs = [phantom_slice(size, coils, seed * 1_000_003 + start + i) for i in range(count)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
