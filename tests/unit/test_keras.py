"""The Keras models of Li et al. 2023, Keras `l2(λ)` weight decay and the conv+dense count."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from prunecli.engine.config import make_config
from prunecli.engine.optim import make_optimizer
from prunecli.errors import UserError
from prunecli.models import build_model
from prunecli.profiling.counts import count


def _sgd_step(model, mode: str, lr=0.1, wd=1e-3):
    """One SGD step (no momentum) on a fixed batch; returns (params before, grads, params after)."""
    torch.manual_seed(0)
    cfg = make_config(optimizer="sgd", lr=lr, momentum=0.0, weight_decay=wd, weight_decay_mode=mode)
    opt = make_optimizer(model, cfg)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return before, grads, dict(model.named_parameters())


def test_keras_decay_is_2_lambda_w_on_conv_kernels_only():
    model, _, _ = build_model("resnet_keras_tiny", num_classes=4)
    lr, wd = 0.1, 1e-3
    before, grads, after = _sgd_step(model, "keras", lr, wd)
    kernels = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(kernels) == 9 and "layer2.0.shortcut.weight" in kernels
    for name, w in before.items():
        decay = 2 * wd * w if name in kernels else 0  # conv biases, BN, Dense: no regularizer in the reference
        expected = w - lr * (grads[name] + decay)
        assert torch.allclose(after[name], expected, atol=1e-7, rtol=0), name
    # the old (PyTorch) decay moves the biases and BN too, with λ instead of 2λ
    model2, _, _ = build_model("resnet_keras_tiny", num_classes=4)
    before, grads, after = _sgd_step(model2, "all", lr, wd)
    assert torch.allclose(after["bn1.bias"], before["bn1.bias"] - lr * (grads["bn1.bias"] + wd * before["bn1.bias"]))


def test_keras_decay_default_kernels_and_densenet_everything():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    plain(torch.randn(1, 3, 8, 8))
    cfg = make_config(optimizer="adam", lr=1e-3, weight_decay=1e-4, weight_decay_mode="keras")
    groups = make_optimizer(plain, cfg).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 2e-4 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(plain[0].weight), id(plain[3].weight)}  # kernels, not biases or BN
    dense, _, _ = build_model("densenet_keras_tiny")
    groups = make_optimizer(dense, cfg).param_groups  # the reference regularises BN γ/β and the Dense bias too
    assert len(groups) == 1 and groups[0]["weight_decay"] == 2e-4
    with pytest.raises(UserError, match="sgd or adam"):
        make_optimizer(plain, make_config(optimizer="adamw", weight_decay_mode="keras"))


def test_conv_dense_count_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.Flatten(), nn.Linear(96, 5))
    c = count(model, (3, 8, 8))
    assert c.macs_conv_dense == 3 * 3 * 3 * 4 * 8 * 8 + 3 * 3 * 4 * 6 * 4 * 4 + 96 * 5
    assert c.params_conv_dense == (3 * 9 * 4 + 4) + 4 * 9 * 6 + (96 * 5 + 5)  # BN's 8 excluded
    assert c.params == c.params_conv_dense + 8


def test_resnet20_keras_counts_as_the_paper():
    """Conv+dense MACs of the Keras ResNet-20 by hand; the paper's reductions imply a 40.8M baseline."""
    c = count(build_model("resnet20_keras")[0], (3, 32, 32))
    k3 = 9
    stage1 = 6 * k3 * 16 * 16 * 32 * 32
    stage2 = k3 * 16 * 32 * 16 * 16 + 5 * k3 * 32 * 32 * 16 * 16 + 16 * 32 * 16 * 16
    stage3 = k3 * 32 * 64 * 8 * 8 + 5 * k3 * 64 * 64 * 8 * 8 + 32 * 64 * 8 * 8
    assert c.macs_conv_dense == k3 * 3 * 16 * 32 * 32 + stage1 + stage2 + stage3 + 64 * 10
    assert round(c.macs_conv_dense / 1e6, 1) == 40.8 and round(c.params_conv_dense / 1e6, 2) == 0.27


def test_keras_resnet_layers():
    model, entry, _ = build_model("resnet56_keras")
    assert entry.protected == ("fc",)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 56 - 1 + 2  # 55 convs + 2 projections (+ the Dense makes the 56 layers)
    assert all(m.bias is not None and not m.bias.any() for m in convs)
    assert isinstance(model.layer2[0].shortcut, nn.Conv2d)  # a bare 1×1 conv: no BN on the projection
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 55 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)
    w = model.layer3[1].conv1.weight  # he_normal: truncated at 2σ, σ = √(2/fan_in)/0.8796
    sigma = (2 / (64 * 9)) ** 0.5 / 0.87962566103423978
    assert w.abs().max() <= 2 * sigma and abs(w.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.05


def test_stride2_conv_pads_like_tensorflow_same():
    """TF 'same' with stride 2 pads only below/right: output (i, j) is centred on input (2i+1, 2j+1)."""
    model, _, _ = build_model("resnet_keras_tiny")
    block = model.layer2[0]
    conv = block.conv1
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1, 1] = 1.0  # the centre tap copies input channel 0
        conv.bias.zero_()
    seen = {}
    conv.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    x = torch.randn(1, 8, 16, 16)
    block(x)
    assert seen["out"].shape[-2:] == (8, 8)
    assert torch.equal(seen["out"][0, 0], x[0, 0, 1::2, 1::2])


def test_keras_densenet_layers():
    model, _, _ = build_model("densenet40_keras")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 39 and all(m.bias is None for m in convs)
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.2 for m in model.modules()) == 38  # 36 layers + 2 transitions
    assert model.fc.in_features == 16 + 3 * 12 * 12 and not model.fc.bias.any()
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bound = (6 / (3 * 9)) ** 0.5  # he_uniform on the stem
    assert model.conv1.weight.abs().max() <= bound
