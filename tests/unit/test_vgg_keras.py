"""The similarity paper's Keras CIFAR VGG-16 (`vgg16_keras`; reference `utils/model.py::vgg16`)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from prunecli.models import build_model, get_entry


def test_layer_order_dropout_and_keras_defaults():
    model, entry, _ = build_model("vgg16_keras")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.bias is not None and torch.all(c.bias == 0) for c in convs)
    blocks = [list(model.features)[i: i + 4] for i in range(0, len(model.features), 4)]
    after = []
    for conv, relu, bn, last in blocks:  # conv(bias) → ReLU → BN → dropout | max-pool
        assert isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU) and not relu.inplace
        assert isinstance(bn, nn.BatchNorm2d) and bn.eps == 1e-3 and bn.momentum == 0.01
        after.append("M" if isinstance(last, nn.MaxPool2d) else last.p)
    assert after == [0.3, "M", 0.4, "M", 0.4, 0.4, "M", 0.4, 0.4, "M", 0.4, 0.4, "M"]
    head = model.classifier
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert head.drop0.p == head.drop1.p == 0.5 and head.norm1.eps == 1e-3 and head.norm1.momentum == 0.01
    assert head.linear1.out_features == 512 and head.linear2.out_features == 10
    assert entry.protected == ("classifier.linear2",)
    assert entry.tied == (("classifier.linear1", "features.48"),)
    # conv + dense parameters, the paper's count (BN excluded): 14.98M, "≈15.0M" in its tables
    assert sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               for p in m.parameters()) == 14_982_474


def test_glorot_uniform_kernels():
    torch.manual_seed(0)
    model, _, _ = build_model("vgg16_keras")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            field = m.weight[0, 0].numel()
            bound = math.sqrt(6 / ((m.weight.shape[0] + m.weight.shape[1]) * field))
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
            assert torch.all(m.bias == 0)


def test_the_hashed_map_is_the_raw_conv_output():
    """The similarity hash hooks the conv module: with conv → ReLU → BN the hooked tensor must
    stay the pre-activation output with its bias (an in-place ReLU would rectify it later)."""
    model, _, _ = build_model("vgg_keras_tiny")
    model.eval()
    conv = model.features[0]
    nn.init.normal_(conv.bias)
    seen = []
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        want = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert torch.equal(seen[0], want) and (seen[0] < 0).any()


def test_tiny_variant_is_registered_for_tests():
    entry = get_entry("vgg_keras_tiny")
    model, _, _ = build_model("vgg_keras_tiny", num_classes=4)
    assert entry.tiny and model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert entry.tied == (("classifier.linear1", "features.24"),)


def test_keras_decay_regularises_the_convs_and_hidden_fc_only():
    """The reference's VGG puts l2 on every conv kernel and FC-512's kernel, not on the final Dense."""
    from prunecli.engine.config import make_config
    from prunecli.engine.optim import make_optimizer

    model, _, _ = build_model("vgg_keras_tiny")
    cfg = make_config(optimizer="sgd", lr=0.1, weight_decay=5e-4, weight_decay_mode="keras")
    decayed, rest = make_optimizer(model, cfg).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    chosen = {names[id(p)] for p in decayed["params"]}
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert decayed["weight_decay"] == 1e-3 and rest["weight_decay"] == 0.0
    assert chosen == convs | {"classifier.linear1.weight"}
