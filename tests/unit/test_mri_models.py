"""MRI reconstruction nets (Park et al. MBDL pruning): Anderson, JFB, data consistency, pruning.

Tiny models on 4-coil 32×32 slices of a smooth phantom with RSS-normalised maps (Σ|S_c|² = 1),
so with a full mask AᴴA = I and a net reduced to its data-consistency steps returns the ground
truth exactly. Full-size models are built on `meta` (names and shapes only).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

import prunecli.models.mri  # noqa: F401  (registers the entries)
from prunecli.models import build_model, get_entry
from prunecli.mri.anderson import anderson
from prunecli.mri.masks import acs_width, uniform_mask
from prunecli.mri.ops import adjoint, forward
from prunecli.mri.pack import pack, to_channels, unpack
from prunecli.pruning.structured import PrunePlan, protected_modules, prune

TINY = ["deq-edsr-tiny", "varnet-tiny", "e2e-varnet-tiny"]
FULL = ["deq-edsr", "varnet", "e2e-varnet"]


def phantom(batch=2, coils=4, size=32, acceleration=3, full=False, seed=0):
    """(packed input [B,4C+1,H,W], complex ground truth [B,H,W], mask [W])."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    body = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1).float() * (0.6 + 0.2 * torch.cos(3 * xx))
    body = body + 0.5 * ((xx - 0.2) ** 2 + (yy + 0.3) ** 2 < 0.05).float()
    images = body * (1 + 0.1 * torch.randn(batch, size, size, generator=g)) * torch.exp(0.5j * (xx + yy))
    maps = []
    for c in range(coils):
        t = 2 * math.pi * c / coils
        dist = (xx - 1.2 * math.cos(t)) ** 2 + (yy - 1.2 * math.sin(t)) ** 2
        maps.append(torch.exp(-dist / 2) * torch.exp(1j * (t + 0.3 * xx)))
    smaps = torch.stack(maps)
    smaps = (smaps / smaps.abs().pow(2).sum(0).sqrt()).expand(batch, -1, -1, -1).clone()
    mask = torch.ones(size) if full else uniform_mask(size, acceleration)
    kspace = forward(images, smaps, mask.view(1, 1, 1, size))
    return pack(kspace, mask.view(1, 1, 1, size), smaps), images, mask


def tiny(name, **kwargs):
    torch.manual_seed(0)
    model, entry, _ = build_model(name, **kwargs)
    return model, entry


# ---------------------------------------------------------------- Anderson


def contraction(scale, n=64, batch=2):
    """f(x) = Wx + b, W symmetric with spectrum in [−0.95, 0.95]; fixed point (I − W)⁻¹ b."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    w = (q * torch.linspace(-0.95, 0.95, n)) @ q.T
    b = scale * torch.randn(batch, n, generator=g)
    return (lambda x: x @ w.T + b), torch.linalg.solve(torch.eye(n) - w, b.T).T


def plain_iterations(f, x, tol, limit=2000):
    for i in range(limit):
        fx = f(x)
        if ((fx - x).norm(dim=1) / (1e-5 + fx.norm(dim=1))).max() < tol:
            return i + 1
        x = fx
    return limit


@pytest.mark.parametrize(("scale", "relative"), [(100.0, False), (1.0, True)])
def test_anderson_finds_the_fixed_point_faster_than_plain_iteration(scale, relative):
    f, solution = contraction(scale)
    x0 = torch.zeros_like(solution)
    x, info = anderson(f, x0, tol=1e-5, max_iter=500, relative_lam=relative)
    assert info["residual"] < 1e-5 and info["iterations"] < 500
    assert torch.allclose(x, solution, rtol=0, atol=1e-3 * solution.norm(dim=1).max().item())
    plain = plain_iterations(f, x0, 1e-5)
    assert info["iterations"] < plain / 2, (info, plain)


def test_anderson_returns_an_exact_fixed_point_at_once_and_respects_max_iter():
    x0 = torch.randn(3, 2, 4, 4)
    x, info = anderson(lambda z: z, x0)
    assert info == {"iterations": 1, "residual": 0.0} and torch.equal(x, x0)
    _, info = anderson(lambda z: -z + 1, x0, max_iter=7, tol=0.0)
    assert info["iterations"] == 7


# ---------------------------------------------------------------- DEQ and JFB


def test_deq_trains_through_one_application_only():
    """Jacobian-free backprop: the solve is gradient-free, the graph holds one T."""
    model, _ = tiny("deq-edsr-tiny")
    x, truth, _ = phantom()
    calls = []
    model.prior.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    out = model(x)
    assert calls.count(True) == 1 and len(calls) == model.last_iterations + 1 > 2
    convs, seen, todo = 0, set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        convs += type(node).__name__.startswith("Convolution")
        todo.extend(n for n, _ in node.next_functions)
    assert convs == sum(isinstance(m, nn.Conv2d) for m in model.prior.modules())  # 2·blocks + 3
    (out - to_channels(truth)).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.gamma.grad.abs() > 0 and model.alpha.grad.abs() > 0
    assert model.prior.head[0].weight.grad.abs().sum() > 0


def test_deq_reports_iterations_and_obeys_tol_and_max_iter_set_on_the_model():
    model, _ = tiny("deq-edsr-tiny")
    x, _, _ = phantom()
    with torch.no_grad():
        model(x)
        strict = model.last_iterations
        assert 2 < strict <= model.max_iter and model.last_residual >= 0
        model.tol = 4e-3
        model(x)
        assert model.last_iterations < strict and model.last_residual < 4e-3
        model.tol, model.max_iter = 0.0, 3
        model(x)
        assert model.last_iterations == 3


def test_deq_with_a_full_mask_and_no_prior_returns_the_truth():
    """α = 0, γ = 1: T(z) = z − (z − x) = x, so the solve stops at the first check."""
    model, _ = tiny("deq-edsr-tiny", gamma=1.0, alpha=0.0)
    x, truth, _ = phantom(full=True)
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(out, to_channels(truth), atol=1e-5)
    assert model.last_iterations <= 2


# ---------------------------------------------------------------- every model


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_map_a_packed_slice_to_a_two_channel_image(name):
    model, entry = tiny(name)
    x, _, _ = phantom()
    assert entry.task == "reconstruction" and entry.family == "mri" and entry.tiny
    assert tuple(x.shape[1:]) == entry.input_shape
    with torch.no_grad():
        first, second = model.eval()(x), model(x)
        wider = model(phantom(batch=1, coils=3, size=48)[0])  # size- and coil-agnostic
    assert first.shape == (2, 2, 32, 32) and torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert wider.shape == (1, 2, 48, 48)


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("full", [True, False])
def test_varnet_without_regulariser_keeps_y_and_combines_with_the_given_maps(full):
    """Regulariser off, dc_w = 1: every cascade gives back k = y, so the output is Aᴴy (= x if full)."""
    model, _ = tiny("varnet-tiny")
    for cascade in model.cascades:
        cascade.model = Zero()
    x, truth, _ = phantom(full=full)
    y, p, s = unpack(x)
    with torch.no_grad():
        out = model(x)
    expected = truth if full else adjoint(y, s, p)
    assert torch.allclose(out, to_channels(expected), atol=1e-5)


def test_e2e_varnet_sensitivity_net_sees_the_acs_block():
    """fastMRI derives the ACS width from a column mask [B,1,1,W,1]; it must find the real block."""
    model, _ = tiny("e2e-varnet-tiny")
    x, _, mask = phantom()
    seen = {}
    model.sens_net.register_forward_pre_hook(lambda m, args: seen.update(mask=args[1]))
    with torch.no_grad():
        model(x)
    columns = seen["mask"]
    assert columns.shape == (2, 1, 1, 32, 1) and columns.dtype == torch.bool
    assert torch.equal(columns[0].flatten(), mask > 0)
    _, low = model.sens_net.get_pad_and_num_low_freqs(columns)
    assert (low >= 2).all() and (low <= acs_width(mask)).all()


# ---------------------------------------------------------------- pruning


def meta(name):
    with torch.device("meta"):
        model, entry, _ = build_model(name)
    return model, entry


@pytest.mark.parametrize("name", FULL + TINY)
def test_protected_globs_are_exactly_the_image_output_convs_and_the_sensitivity_net(name):
    model, entry = meta(name)
    named = {m: n for n, m in model.named_modules()}
    hits = {named[m] for m in protected_modules(model, entry.protected, [])}
    expected = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels == 2}
    if name.startswith("e2e"):
        expected |= {n for n in named.values() if n == "sens_net" or n.startswith("sens_net.")}
    assert hits == expected
    cascades = get_entry(name).defaults.get("num_cascades")
    assert len([n for n in hits if not n.startswith("sens_net")]) == (cascades or 1)


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_prune_at_40_percent_keeping_the_image_convs(name):
    model, entry = tiny(name)
    guarded = {n: m.out_channels for n, m in model.named_modules()
               if isinstance(m, nn.Conv2d) and m in protected_modules(model, entry.protected, [])}
    pruned, outcome = prune(model, entry.input_shape, lambda seed: tp.importance.GroupMagnitudeImportance(p=1),
                            PrunePlan(ratio=0.4), entry.protected)
    assert outcome.layers and outcome.after.params < 0.7 * outcome.before.params
    after = dict(pruned.named_modules())
    assert all(after[n].out_channels == c for n, c in guarded.items())
    assert not any(r["name"].startswith("sens_net") for r in outcome.layers)
    x, _, _ = phantom()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        out = pruned.eval()(x)
    assert out.shape == (2, 2, 32, 32) and torch.isfinite(out).all()
    assert not [w for w in caught if "num_features" in str(w.message)]  # InstanceNorms followed their convs
