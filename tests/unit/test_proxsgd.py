"""ProxSGD (Yang et al. ICLR 2020) as GSparsity uses it: the proximal step, its reductions, exact zeros."""

from __future__ import annotations

import math

import pytest
import torch

from prunecli.engine.config import TrainConfig
from prunecli.engine.proxsgd import ProxSGD, filter_mu, param_groups, prox_group, regularized_filters
from prunecli.models import build_model

BETA, DELTA, RHO = 0.999, 1e-8, 0.9


def _one_step(x0, g, mu, lr, regularized=True, snap=None):
    p = torch.nn.Parameter(x0.clone())
    opt = ProxSGD([{"params": [p], "mu": mu, "regularized": regularized}], lr=lr, rho=RHO,
                  **({} if snap is None else {"snap": snap}))
    p.grad = g.clone()
    opt.step()
    return p.detach()


def test_prox_is_the_closed_form_group_soft_threshold():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 3, 3)
    x[2] *= 1e-3  # a filter whose norm is below the threshold
    tau = torch.rand(6, 1, 1, 1) + 0.5
    out = prox_group(x, 0.4, tau)
    for f in range(6):
        norm = x[f].norm()
        expected = max(0.0, 1 - 0.4 / (tau[f].item() * norm.item())) * x[f]
        assert torch.allclose(out[f], expected, atol=1e-7)
    assert torch.count_nonzero(out[2]) == 0


def test_first_step_matches_the_reference_update():
    """v = ρg, r = (1−β)g², τ_f = mean_f(√(r/(1−β)) + δ) = mean_f(|g|) + δ; x̂ = prox(x − v/τ_f);
    x ← x + ε(x̂ − x)."""
    torch.manual_seed(1)
    x0, g = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    mu, lr = 0.3, 0.1
    tau = (g.abs() + DELTA).flatten(1).mean(1).view(-1, 1, 1, 1)
    target = prox_group(x0 - RHO * g / tau, mu, tau)
    expected = x0 + lr * (target - x0)
    assert torch.allclose(_one_step(x0, g, mu, lr), expected, atol=1e-6)  # the default: the reference
    expected[target.flatten(1).abs().amax(1) == 0] = 0
    assert torch.allclose(_one_step(x0, g, mu, lr, snap=True), expected, atol=1e-6)


def test_mu_zero_is_the_plain_adam_like_step():
    torch.manual_seed(2)
    x0, g = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    tau_filter = (g.abs() + DELTA).flatten(1).mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(_one_step(x0, g, 0.0, 0.01), x0 - 0.01 * RHO * g / tau_filter, atol=1e-6)
    tau_element = g.abs() + DELTA  # not regularised: element-wise scale
    assert torch.allclose(_one_step(x0, g, 0.0, 0.01, regularized=False), x0 - 0.01 * RHO * g / tau_element,
                          atol=1e-6)


def test_groups_become_exactly_zero_once_the_threshold_applies():
    x0 = torch.full((3, 1, 1, 1), 1e-3)
    x0[0] = 5.0
    g = torch.ones(3, 1, 1, 1)  # τ = 1: x̃ = x − 0.9, the 5.0 filter survives, the small ones fall under μ/τ
    snapped = _one_step(x0, g, mu=1.0, lr=0.001, snap=True)
    assert snapped[0].item() != 0 and torch.count_nonzero(snapped[1:]) == 0  # exact zeros, not tiny
    convex = _one_step(x0, g, mu=1.0, lr=0.001)  # the default, the reference: shrinks by (1 − ε) only
    assert torch.allclose(convex[1:], x0[1:] * (1 - 0.001)) and torch.count_nonzero(convex[1:]) == 2


def test_groups_and_normalisation():
    model, _, _ = build_model("tv_resnet_tiny", num_classes=4)
    names = regularized_filters(model, "conv12")
    assert "conv1" not in names  # the stem is not regularised (GSparsity)
    assert names == ["layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer3.0.conv1",
                     "layer3.0.conv2", "layer4.0.conv1", "layer4.0.conv2"]
    assert "layer1.0.downsample.0" in regularized_filters(model, "all")
    cfg = TrainConfig(optimizer="proxsgd", mu=0.05, normalization="div", mu_scale={"layer2.*": 2, "layer3.*": 2})
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    w = model.layer2[0].conv2.weight
    assert groups["layer2.0.conv2"]["mu"] == pytest.approx(2 * 0.05 / math.sqrt(w[0].numel()))
    assert groups["layer1.0.conv1"]["mu"] == pytest.approx(filter_mu(model.layer1[0].conv1.weight, 0.05, "div"))
    assert filter_mu(w, 0.05, "mul") == pytest.approx(0.05 * math.sqrt(w[0].numel()))
    assert not groups["unregularized"]["regularized"]
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(model.parameters()))  # every parameter in exactly one group


def test_default_config_takes_the_reference_convex_step():
    """With the defaults (TrainConfig → make_optimizer), a filter whose prox output is 0 keeps (1 − ε)
    of its norm, as in the reference; the old default (snap) set it to exactly zero."""
    from prunecli.engine.optim import make_optimizer

    x0 = torch.tensor([5.0, 0.5]).view(2, 1, 1, 1)  # 1×1 conv, one input: each filter is one weight
    out = {}
    for snap in (None, True):
        cfg = TrainConfig(optimizer="proxsgd", lr=0.01, momentum=RHO, mu=1.0, normalization="none", prunable="all",
                          **({} if snap is None else {"prox_snap": snap}))
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1))
        model[0].weight.data.copy_(x0)
        model[0].weight.grad = torch.ones_like(x0)  # τ = 1: x̃ = x − 0.9; |0.5 − 0.9| < μ/τ = 1 → prox 0
        model[0].bias.grad = torch.zeros(2)
        make_optimizer(model, cfg).step()
        out[snap] = model[0].weight.detach().flatten()
    assert out[None][1].item() == pytest.approx(0.5 * (1 - 0.01))  # the reference keeps 99% of the norm
    assert out[None][0].item() == pytest.approx(5.0 + 0.01 * ((5.0 - 0.9) * (1 - 1 / 4.1) - 5.0))
    assert out[True][1].item() == 0 and out[True][0].item() == out[None][0].item()  # --prox-snap zeroes it
