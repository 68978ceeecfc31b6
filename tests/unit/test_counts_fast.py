"""`count` (profiling/counts.py) equals Torch-Pruning's own `count_ops_and_params` plus the
conv/dense counter, family by family, pruned models too, and leaves model and RNG as they were.

`count` runs Torch-Pruning's counter on a weight-sharing copy under `no_grad` in one forward; a
family whose numbers drifted from the library's call would silently change every `.flops.json`
and every `--target-macs` search.
"""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from prunecli.models import build_model
from prunecli.profiling import counts

MODELS = ["resnet_tiny", "vgg_tiny", "densenet_tiny", "tv_resnet_tiny", "tv_densenet_tiny", "tv_vit_tiny",
          "vit_tiny_test", "convnext_tiny_test", "swin_tiny_test", "levit_tiny_test", "coat_lite_tiny_test",
          "resnet_keras_tiny", "varnet-tiny", "e2e-varnet-tiny", "deq-edsr-tiny"]


def _reference(model, shape) -> tuple:
    """The library's call, as `count` made it before: deep copy, gradients on; then conv/dense."""
    macs, params, layer_macs, layer_params = tp.utils.count_ops_and_params(model, torch.randn(1, *shape),
                                                                           layer_wise=True)
    layers = {}
    for name, module in model.named_modules():
        if name and next(module.children(), None) is None:
            m, p = int(layer_macs.get(module) or 0), int(layer_params.get(module) or 0)
            if m or p:
                layers[name] = (type(module).__name__, m, p)
    return int(macs), int(params), layers, _conv_dense(model, torch.randn(1, *shape))


def _conv_dense(model, x) -> tuple[int, int]:
    """Li et al.'s conv/dense count as `count` made it before, in a forward of its own."""
    import torch.nn as nn

    macs = 0

    def hook(module, inputs, output) -> None:
        nonlocal macs
        if isinstance(module, nn.modules.conv._ConvNd):
            macs += module.weight[0].numel() * output[0].numel()
        else:
            macs += module.in_features * output[0].numel()

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    counts.hooked_forward(model, x, handles)
    return macs, sum(p.numel() for m in layers for p in m.parameters(recurse=False))


def _ours(model, shape) -> tuple:
    got = counts.count(model, shape)
    return (got.macs, got.params, {n: (c.kind, c.macs, c.params) for n, c in got.layers.items()},
            (got.macs_conv_dense, got.params_conv_dense))


def _check(model, shape) -> None:
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ours = _ours(model, shape)
    after = torch.get_rng_state()
    torch.set_rng_state(rng)
    reference = _reference(model, shape)
    assert torch.equal(after, torch.get_rng_state())  # the global RNG advanced exactly as before
    assert ours == reference
    assert ours[0] > 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # nothing touched
    assert not any(hasattr(m, "__flops__") for m in model.modules())  # the counter's state stayed on the copy


@pytest.mark.parametrize("name", MODELS)
def test_count_equals_torch_pruning(name, capsys):
    torch.manual_seed(0)
    model, entry, _ = build_model(name)
    counts.count(model, entry.input_shape)
    assert capsys.readouterr().out == ""  # the counter's warnings (CoaT's shared convs) go to stderr: --json
    _check(model, entry.input_shape)


def test_pruned_model_counts_agree(tmp_path):
    from prunecli.io import checkpoint as ckpt
    from tests.conftest import run_cli, untrained

    src, out = untrained("resnet_tiny", tmp_path / "m.safetensors"), tmp_path / "p.safetensors"
    r = run_cli("prune", src, "--method", "l1", "--ratio", "0.4", "-o", out)
    assert r.exit_code == 0, r.output
    loaded = ckpt.load(out)
    _check(loaded.model, loaded.header.input_shape)
