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


def hooked_forward(model, x, handles: list) -> None:
    """One eval-mode, no-grad forward of `x` for the forward hooks in `handles`, which are removed
    afterwards; the model's train/eval mode is restored (shape probes: input shapes, execution
    order, identity blocks)."""
    import torch

    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()


def count(model, input_shape, device: str = "cpu") -> ModelCount:
    """MACs and params of `model` for one sample of `input_shape`, by Torch-Pruning's counter.

    `tp.utils.count_ops_and_params` deep-copies the model, weights included, so that its hooks and
    counters never touch the caller's modules, and runs the forward with gradients on; the same
    counter runs here on a copy of the modules that shares the weights, under `no_grad`, and
    the conv/dense count (`_conv_dense_hooks`) reads the same forward. Same counts (`tests/unit/test_counts_fast.py`), less than
    half the time: counting was a third of `prune`'s own time on a ResNet-50 and runs for every
    trial of a `--target-macs` search.
    """
    import torch
    from torch_pruning.utils import op_counter

    # two draws, as when each counter drew its own input: the global RNG advances as it always has
    x, _ = example_input(input_shape, device=device), example_input(input_shape, device=device)
    was_training = model.training
    model.eval()  # before copying, as the library's call did: eval() clears timm's train-time caches
    try:
        shadow = _sharing_copy(model)
    finally:
        model.train(was_training)
    # its warning on shared modules (CoaT), printed from here on, would corrupt --json
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), _conv_dense_hooks(shadow) as dense:
        counter = op_counter.add_flops_counting_methods(shadow)
        counter.eval()
        counter.start_flops_count(ost=sys.stdout, verbose=False, ignore_list=[])
        try:
            counter(x)
            macs, params, layer_macs, layer_params = counter.compute_average_flops_cost()
        finally:
            counter.stop_flops_count()
            op_counter.CUSTOM_MODULES_MAPPING = {}
    layers = {}
    for name, module in shadow.named_modules():
        if not name or next(module.children(), None) is not None:
            continue
        m, p = int(layer_macs.get(module) or 0), int(layer_params.get(module) or 0)
        if m or p:
            layers[name] = LayerCount(name, type(module).__name__, m, p)
    return ModelCount(int(macs), int(params), layers, dense["macs"], dense["params"])


def _sharing_copy(model):
    """A deep copy of the modules that shares every parameter and buffer with `model` (the counter
    adds attributes and hooks to modules and reads only shapes)."""
    import copy

    memo: dict[int, object] = {}
    for module in model.modules():
        for t in (*module._parameters.values(), *module._buffers.values()):
            if t is not None:
                memo[id(t)] = t
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def _conv_dense_hooks(model):
    """MACs and params of the Conv and Linear layers alone, as Li et al.'s `measure_model` counts,
    over the forwards run inside: Conv kh·kw·(Cin/groups)·Cout·Hout·Wout (no bias), Linear in·out
    per output position; params are those layers' weights and biases (BatchNorm, activations and
    pooling count nothing)."""
    import torch.nn as nn

    result = {"macs": 0, "params": 0}

    def hook(module, inputs, output) -> None:
        if isinstance(module, nn.modules.conv._ConvNd):
            result["macs"] += module.weight[0].numel() * output[0].numel()  # (Cin/g)·kh·kw per output element
        else:
            result["macs"] += module.in_features * output[0].numel()

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    result["params"] = sum(p.numel() for m in layers for p in m.parameters(recurse=False))
    try:
        yield result
    finally:
        for h in handles:
            h.remove()


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
