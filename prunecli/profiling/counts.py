"""Parameter and MAC counts, whole-model and per layer.

MACs (multiply-accumulates, not FLOPs = 2×MACs) come from Torch-Pruning's counter
(`tp.utils.count_ops_and_params`, adapted from ptflops), for one sample of the model's input
shape. Per-layer rows are the leaf modules that hold parameters or do work.
"""

from __future__ import annotations

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


def example_input(input_shape, batch: int = 1, device: str = "cpu"):
    import torch

    return torch.randn(batch, *input_shape, device=device)


def count(model, input_shape, device: str = "cpu") -> ModelCount:
    import torch_pruning as tp

    was_training = model.training
    model.eval()
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
    return ModelCount(int(macs), int(params), layers)


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
        before=Counts(macs=before.macs, params=before.params), after=Counts(macs=after.macs, params=after.params),
        ratio={"macs": before.macs / max(1, after.macs), "params": before.params / max(1, after.params)},
        layers=rows,
    )
