"""Cartesian undersampling masks over the phase-encode (last) dimension.

Every function returns a float32 tensor [W] of 0/1, one entry per k-space column; the data
layer broadcasts it to [1, H, W] (all readout rows of a sampled column are acquired).

- `uniform_mask`: the MBDL protocol (Park et al.; spec §1.1, `uniformly_cartesian_mask` in
  wustl-cig/MBDL_Pruning `dataset/pmri_fastmri_brain.py`), the paper's default at R = 6.
- `fastmri_mask`: fastMRI's own random / equispaced masks (`fastmri.data.subsample`), for
  comparisons with the fastMRI challenge conventions (4× with 8% centre, 8× with 4%).
"""

from __future__ import annotations

import torch

KINDS = ("uniform", "random", "equispaced")


def uniform_mask(width: int, acceleration: int, seed: int | None = None) -> torch.Tensor:
    """Column i is sampled when i mod R == 0, plus a central ACS (auto-calibration) block.

    ACS block, reproducing the reference code's indices exactly: with a = int(W·0.2·(2/R)) and
    h = a // 2, columns W//2 − h … W//2 + h (inclusive) are sampled, and when W is even the block
    ends one column earlier (W//2 + h − 1). So the block has 2h + 1 columns for odd W and 2h for
    even W: the spec's "int(W·0.2·2/R) columns" up to rounding a down to even. It is centred on
    the DC column W//2 of a centred FFT. The pattern is deterministic; `seed` is accepted (and
    ignored) so every mask kind has the same signature. The effective acceleration W/#sampled is
    below R because of the ACS block (≈4.6 at W=320, R=6).
    """
    if width < 1 or acceleration < 1:
        raise ValueError(f"width and acceleration must be positive, got {width}, {acceleration}")
    mask = torch.zeros(width)
    mask[::acceleration] = 1.0
    half = int(width * 0.2 * (2 / acceleration)) // 2
    start, end = width // 2 - half, width // 2 + half
    if width % 2 == 0:
        end -= 1
    mask[max(start, 0):max(end + 1, 0)] = 1.0
    return mask


def default_center(acceleration: float) -> float:
    """fastMRI's centre fractions: 0.08 at 4×, 0.04 at 8×, i.e. 0.32/R (in between: the same rule)."""
    return 0.32 / acceleration


def fastmri_mask(kind: str, width: int, acceleration: int, center_fraction: float | None = None,
                 seed: int | None = 0) -> torch.Tensor:
    """fastMRI's `RandomMaskFunc` ("random") or `EquispacedMaskFractionFunc` ("equispaced").

    Both keep round(W·center_fraction) central columns. "random" samples the others with the
    probability that makes the *expected* rate W/R; "equispaced" spaces them so the total count
    matches W/R (the variant used to make the public multi-coil data). `seed` fixes the draw
    (and the equispaced offset): one mask per data set, like the paper's fixed P.
    """
    from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc

    functions = {"random": RandomMaskFunc, "equispaced": EquispacedMaskFractionFunc}
    if kind not in functions:
        raise ValueError(f"unknown fastMRI mask kind {kind!r}; use random or equispaced")
    center = default_center(acceleration) if center_fraction is None else center_fraction
    func = functions[kind]([center], [acceleration], seed=seed)
    mask, _ = func((1, width, 1), seed=seed)  # fastMRI's real views put columns at dim -2
    return mask.reshape(width).float()


def make_mask(kind: str, width: int, acceleration: int, center_fraction: float | None = None,
              seed: int | None = 0) -> torch.Tensor:
    """Dispatch on `kind` (one of KINDS); `center_fraction` is ignored by the uniform rule."""
    if kind == "uniform":
        return uniform_mask(width, acceleration, seed)
    return fastmri_mask(kind, width, acceleration, center_fraction, seed)


def acs_width(mask: torch.Tensor) -> int:
    """The widest centred block [W//2 − n//2, W//2 − n//2 + n) of columns that is fully sampled.

    This is the calibration region a scanner acquires fully, and the same centring that
    `prunecli.mri.coils.estimate_smaps` uses, so coil maps estimated from it use only data the
    mask measures. Growing n by one adds one column, alternately right and left, so the first
    unsampled one ends the block.
    """
    sampled = mask.reshape(-1) > 0
    width, n = sampled.numel(), 0
    while n < width:
        start = width // 2 - (n + 1) // 2
        if not bool(sampled[start:start + n + 1].all()):
            break
        n += 1
    return n


def effective_acceleration(mask: torch.Tensor) -> float:
    """Effective acceleration: columns / sampled columns."""
    return mask.numel() / max(float(mask.sum()), 1.0)
