"""Parameter and MAC counts, whole-model and per layer.

MACs (multiply-accumulates, not FLOPs = 2×MACs) come from Torch-Pruning's counter
(`tp.utils.count_ops_and_params`, adapted from ptflops), for one sample of the model's input
shape. Per-layer rows are the leaf modules that hold parameters or do work.

Beside it, the count some papers report (Li et al. 2023's `utils/measure.py`): MACs of the
convolutions (kh·kw·Cin·Cout·Hout·Wout, no bias) and dense layers (in·out) only, params of
conv and dense layers only (biases included, BatchNorm excluded); `macs_conv_dense`,
`params_conv_dense`.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field


@dataclass
class LayerCount:
    name: str
    kind: str
    macs: int
    params: int


@dataclass
class ModelCount:
    macs: int
    params: int
    layers: dict[str, LayerCount] = field(default_factory=dict)
    macs_conv_dense: int | None = None
    params_conv_dense: int | None = None


def example_input(input_shape, batch: int = 1, device: str = "cpu"):
    import torch

    return torch.randn(batch, *input_shape, device=device)


def count(model, input_shape, device: str = "cpu") -> ModelCount:
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    with contextlib.redirect_stdout(sys.stderr):  # its warning on shared modules (CoaT) would corrupt --json
        macs, params, layer_macs, layer_params = tp.utils.count_ops_and_params(
            model, example_input(input_shape, device=device), layer_wise=True
        )
    model.train(was_training)
    layers = {}
    for name, module in model.named_modules():
        if not name or next(module.children(), None) is not None:
            continue
        m, p = int(layer_macs.get(module) or 0), int(layer_params.get(module) or 0)
        if m or p:
            layers[name] = LayerCount(name, type(module).__name__, m, p)
    conv_macs, conv_params = conv_dense(model, input_shape, device)
    return ModelCount(int(macs), int(params), layers, conv_macs, conv_params)


def conv_dense(model, input_shape, device: str = "cpu") -> tuple[int, int]:
    """(MACs, params) of the Conv and Linear layers alone, as Li et al.'s `measure_model` counts.

    Conv: kh·kw·(Cin/groups)·Cout·Hout·Wout (the paper's models have groups=1); Linear:
    in·out per output position (one position after a Flatten, as in the paper). Params are
    those layers' weights and biases; BatchNorm, activations and pooling count nothing.
    """
    import torch
    import torch.nn as nn

    macs = 0

    def hook(module, inputs, output) -> None:
        nonlocal macs
        if isinstance(module, nn.modules.conv._ConvNd):
            macs += module.weight[0].numel() * output[0].numel()  # (Cin/g)·kh·kw per output element
        else:
            macs += module.in_features * output[0].numel()

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for m in layers for p in m.parameters(recurse=False))
    return int(macs), int(params)


def flops_sidecar(before: ModelCount, after: ModelCount, input_shape, checkpoint: str):
    """The `<stem>.flops.json` document comparing an unpruned and a pruned count."""
    from prunecli.io.schema import Counts, FlopsSidecar, LayerFlops

    rows = []
    for name, b in before.layers.items():
        a = after.layers.get(name, LayerCount(name, b.kind, 0, 0))
        rows.append(LayerFlops(name=name, kind=b.kind, macs_before=b.macs, macs_after=a.macs,
                               params_before=b.params, params_after=a.params))
    return FlopsSidecar(
        checkpoint=checkpoint, input_shape=list(input_shape),
        before=Counts(macs=before.macs, params=before.params, macs_conv_dense=before.macs_conv_dense,
                      params_conv_dense=before.params_conv_dense),
        after=Counts(macs=after.macs, params=after.params, macs_conv_dense=after.macs_conv_dense,
                     params_conv_dense=after.params_conv_dense),
        ratio={"macs": before.macs / max(1, after.macs), "params": before.params / max(1, after.params)},
        layers=rows,
    )
