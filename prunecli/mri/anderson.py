"""Anderson acceleration for batched fixed points x = f(x), the forward solver of a DEQ.

A deep equilibrium model (Bai et al., NeurIPS 2019) defines its output as a fixed point of one
layer instead of a fixed number of layers, so its forward pass is a root-finding problem and its
cost is the number of solver iterations times the cost of one layer. Park et al. (MBDL pruning,
arXiv 2311.02003) solve it with Anderson acceleration (Anderson 1965; Walker & Ni 2011), the DEQ
tutorial's solver, whose reference copy (`anderson_solver` in wustl-cig/MBDL_Pruning
`torch_util/module.py`) calls the removed `torch.solve`. This is that algorithm with
`torch.linalg.solve`:

- keep the last m iterates X_i and their images F_i = f(X_i), residuals G_i = F_i − X_i;
- choose weights a (Σ a_i = 1) minimising ‖Σ a_i G_i‖² + λ‖a‖², a bordered (m+1)×(m+1) linear
  system per sample;
- next iterate x = β·Σ a_i F_i + (1 − β)·Σ a_i X_i (β = 1: pure Anderson mixing).

For a linear contraction this is GMRES-like and needs far fewer evaluations of f than plain
iteration x ← f(x); for a DEQ whose layer is a large CNN, evaluations are the whole cost.

Differences from the reference, each for a reason:
- the residual ‖f(x) − x‖ / (1e-5 + ‖f(x)‖) is measured per sample and the solve stops when the
  worst sample is below `tol` (the reference uses one norm over the batch, so a batch of easy
  slices can hide a hard one);
- it is also checked after the two start-up evaluations, so an exact fixed point returns at once;
- the small bordered system is solved in float64 (its entries are squared norms of residuals and
  λ = 1e-4 is tiny next to them in float32);
- a non-finite residual (a diverging f) stops the solve instead of running to `max_iter`;
- `relative_lam=True` (off by default, to match the reference) scales λ by the mean ‖G_i‖².
  The reference adds λ·I as is, so once ‖G_i‖² ≪ λ (residual norms below 1e-2, e.g. images of
  max-normalised k-space near convergence) the weights tend to 1/n and the method degrades to
  averaging the last m iterates, slower than plain iteration (on a symmetric contraction with
  spectral radius 0.95, ‖b‖ ≈ 8: 231 evaluations vs 163 plain vs 48 with `relative_lam`).

Gradients: the solver does not care; callers run it under `torch.no_grad()` and differentiate
one more application of f (Jacobian-free backprop, Fung et al., AAAI 2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _residual(fx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample relative residual ‖f(x) − x‖ / (1e-5 + ‖f(x)‖) of flattened [B, N] tensors."""
    return (fx - x).norm(dim=1) / (1e-5 + fx.norm(dim=1))


def anderson(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, m: int = 5, lam: float = 1e-4,
             beta: float = 1.0, max_iter: int = 100, tol: float = 1e-4,
             relative_lam: bool = False) -> tuple[torch.Tensor, dict]:
    """Solve x = f(x) for a batch [B, ...] of real tensors by Anderson acceleration.

    Args:
        f: the fixed-point map; takes and returns tensors shaped like `x0`.
        x0: the starting point, batch first.
        m: memory (number of past iterates mixed), at least 2.
        lam: Tikhonov regulariser of the mixing least-squares problem.
        beta: mixing (damping) parameter; 1.0 takes the mixed images Σ a_i f(X_i).
        max_iter: most evaluations of `f`.
        tol: stop when every sample's relative residual is below this.
        relative_lam: scale λ by the mean squared residual norm (scale-invariant mixing);
            False (the reference) adds λ·I as is.

    Returns:
        (x, info): the last iterate, shaped like `x0`, and `{"iterations": evaluations of f,
        "residual": the worst sample's relative residual ‖f(x) − x‖ / (1e-5 + ‖f(x)‖)}`.
    """
    if m < 2:
        raise ValueError(f"Anderson memory m must be at least 2, got {m}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    bsz, shape = x0.shape[0], x0.shape
    X = x0.new_zeros(bsz, m, x0[0].numel())
    F = torch.zeros_like(X)

    def evaluate(slot: int, x: torch.Tensor) -> float:
        X[:, slot] = x.reshape(bsz, -1)
        F[:, slot] = f(x.reshape(shape)).reshape(bsz, -1)
        return float(_residual(F[:, slot], X[:, slot]).max())

    res, k = evaluate(0, x0), 0
    if res >= tol and math.isfinite(res) and max_iter > 1:
        k = 1
        res = evaluate(1, F[:, 0].clone())
    H = torch.zeros(bsz, m + 1, m + 1, dtype=torch.float64, device=x0.device)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    rhs = torch.zeros(bsz, m + 1, 1, dtype=torch.float64, device=x0.device)
    rhs[:, 0] = 1
    while res >= tol and math.isfinite(res) and k + 1 < max_iter:
        k += 1
        n = min(k, m)
        G = F[:, :n] - X[:, :n]
        eye = torch.eye(n, dtype=torch.float64, device=x0.device)
        gram = torch.bmm(G, G.transpose(1, 2)).double()
        scale = gram.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] if relative_lam else 1.0
        H[:, 1:n + 1, 1:n + 1] = gram + lam * scale * eye
        a = torch.linalg.solve(H[:, :n + 1, :n + 1], rhs[:, :n + 1])[:, 1:n + 1, 0].to(x0.dtype)
        mixed = beta * (a[:, None] @ F[:, :n])[:, 0]
        if beta != 1.0:
            mixed = mixed + (1 - beta) * (a[:, None] @ X[:, :n])[:, 0]
        res = evaluate(k % m, mixed)
    return X[:, k % m].reshape(shape).clone(), {"iterations": k + 1, "residual": res}
