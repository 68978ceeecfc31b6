"""ProxSGD with group sparsity on output filters: the search phase of GSparsity.

Yang, Yuan, Chatzimichailidis, van Sloun, Lei, Chatzinotas, "ProxSGD: Training Structured
Neural Networks under Regularization and Constraints", ICLR 2020; Chatzimichailidis, Zela,
Keuper, Yang, "GSparsity: Unifying Network Pruning and Neural Architecture Search by Group
Sparsity", AutoML-Conf 2022 (code: cc-hpc-itwm/GSparsity `filter_pruning/`). Our spec:
`shared/research/seeds-mbdl-gsparsity.md` §2.1–2.2.

It minimises CE(W) + Σ_g μ_g‖W_g‖₂ over the output filters g of the chosen convolutions:
    v ← (1−ρ)v + ρg            (ρ = 0.9: the new gradient gets 0.9 — the reference's convention)
    r ← βr + (1−β)g²,  τ = √(r/(1−βᵗ)) + δ     (Adam-like scale; one scalar per filter: its mean)
    regularised filter: x̃ = x − v/τ,  x̂ = max(0, 1 − μ_g/(τ‖x̃‖₂))·x̃,  x ← x + ε(x̂ − x)
    other tensors:      x ← x − εv/τ           (no weight decay)
μ_g = μ · scale(layer) · normalisation: `div` μ/√(C_in·k·k) (the paper's), `mul` μ·√(C_in·k·k),
`none` μ. The reference's convex step (our default) never reaches exact zeros: a filter whose
prox is 0 only shrinks by 1−ε per step, and the 1e-6 threshold of `prune --method zero-groups`
decides later. `snap` (`train --prox-snap`) is a different algorithm: such a filter is set to
exactly zero at once, as a step with ε = 1 would, even when the convex step would have kept
(1−ε) of its norm and a later gradient could have revived it.
"""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn as nn

from prunecli.errors import UserError

NORMALIZATIONS = ("div", "mul", "none")


def regularized_filters(model: nn.Module, prunable: str, protected: tuple[str, ...] = ()) -> list[str]:
    """Names of the Conv2d modules whose output filters are groups.

    `conv12`: GSparsity's setting — conv1 and conv2 inside residual blocks (`*.conv1`, `*.conv2`,
    not the stem); `all`: every Conv2d except the protected classifier.
    """
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in protected]
    if prunable == "conv12":
        names = [n for n, _ in convs if "." in n and n.rsplit(".", 1)[1] in ("conv1", "conv2")]
    elif prunable == "all":
        names = [n for n, _ in convs]
    else:
        raise UserError(f"--prunable {prunable!r}: use conv12 or all")
    if not names:
        raise UserError(f"--prunable {prunable}: the model has no such convolutions (try --prunable all)")
    return names


def filter_mu(weight: torch.Tensor, mu: float, normalization: str) -> float:
    fan_in = weight[0].numel()  # C_in·k·k
    if normalization == "div":
        return mu / math.sqrt(fan_in)
    if normalization == "mul":
        return mu * math.sqrt(fan_in)
    return mu


def layer_scale(name: str, scales: dict[str, float]) -> float:
    """The product of the `--mu-scale GLOB=FACTOR` factors whose glob matches the layer."""
    factor = 1.0
    for pattern, value in scales.items():
        if fnmatch.fnmatchcase(name, pattern):
            factor *= value
    return factor


def param_groups(model: nn.Module, cfg, protected: tuple[str, ...] = ()) -> list[dict]:
    """One optimizer group per regularised weight (its μ_g), one for everything else (μ = 0)."""
    names = regularized_filters(model, cfg.prunable, protected)
    modules = dict(model.named_modules())
    groups, taken = [], set()
    for name in names:
        weight = modules[name].weight
        mu = filter_mu(weight, cfg.mu * layer_scale(name, cfg.mu_scale), cfg.normalization)
        groups.append({"params": [weight], "mu": mu, "regularized": True, "name": name})
        taken.add(id(weight))
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return [*groups, {"params": rest, "mu": 0.0, "regularized": False, "name": "unregularized"}]


class ProxSGD(torch.optim.Optimizer):
    """ProxSGD; a `regularized` group holds conv weights whose output filters are the groups
    (one scale τ per filter, prox with its `mu`); other groups take the element-wise Adam-like step."""

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, beta: float = 0.999, delta: float = 1e-8,
                 mu: float = 0.0, snap: bool = False):
        if not 0 < rho <= 1:
            raise UserError(f"ProxSGD momentum ρ must be in (0, 1], got {rho}")
        defaults = {"lr": lr, "rho": rho, "beta": beta, "delta": delta, "mu": mu, "snap": snap, "regularized": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if not state:
            state["t"], state["v"], state["r"] = 0, torch.zeros_like(p), torch.zeros_like(p)
        rho, beta, eps = group["rho"], group["beta"], group["lr"]
        state["t"] += 1
        state["v"].mul_(1 - rho).add_(p.grad, alpha=rho)
        state["r"].mul_(beta).addcmul_(p.grad, p.grad, value=1 - beta)
        tau = (state["r"] / (1 - beta ** state["t"])).sqrt_().add_(group["delta"])
        if group["regularized"] and p.dim() > 1:
            tau = tau.flatten(1).mean(1).view(-1, *([1] * (p.dim() - 1)))  # one scale per filter
            target = prox_group(p - state["v"] / tau, group["mu"], tau)
            p.add_(target - p, alpha=eps)
            if group["snap"] and group["mu"] > 0:
                p[target.flatten(1).abs().amax(1) == 0] = 0
        else:
            p.addcdiv_(state["v"], tau, value=-eps)


def prox_group(x: torch.Tensor, mu: float, tau: torch.Tensor) -> torch.Tensor:
    """Group soft-threshold per output filter: max(0, 1 − μ/(τ‖x_f‖₂))·x_f (the prox of (μ/τ)‖·‖₂)."""
    norms = x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return (1 - mu / (tau * norms.clamp_min(1e-30))).clamp_min(0) * x


def zero_fraction(model: nn.Module, names: list[str], threshold: float = 1e-6) -> tuple[int, int]:
    """(filters with ‖W_f‖₂ < threshold, filters) over the regularised convolutions."""
    modules = dict(model.named_modules())
    zeros = total = 0
    for name in names:
        norms = modules[name].weight.detach().flatten(1).norm(dim=1)
        zeros += int((norms < threshold).sum())
        total += norms.numel()
    return zeros, total


def search_status(header, cfg, threshold: float = 1e-6):
    """Per epoch of a search: the fraction of zero groups, and the MACs (and ratio) that removing
    them now would give — a compression of a copy, the same code as `prune --method zero-groups`
    with its default `--fold reference` (all-zero bottleneck branches go)."""
    import copy

    from prunecli.methods.zero_groups import drop_zero_branches, zero_channels
    from prunecli.models import get_entry
    from prunecli.profiling.counts import count
    from prunecli.pruning.groups import prune_indices

    shape, protected = header.input_shape, get_entry(header.model.name).protected
    dense: list[int] = []

    def status(model: nn.Module) -> dict:
        trial = copy.deepcopy(model).cpu().eval()
        if not dense:
            dense.append(count(trial, shape).macs)
        zeros, total = zero_fraction(trial, regularized_filters(trial, cfg.prunable, protected), threshold)
        removed, _, _ = zero_channels(trial, shape, protected, threshold)
        drop_zero_branches(trial, shape, protected, threshold, removed)
        if removed:
            prune_indices(trial, shape, removed)
        macs = count(trial, shape).macs
        return {"zero_groups": zeros / max(1, total), "macs_compressed": macs, "macs_ratio": dense[0] / max(1, macs)}

    return status
