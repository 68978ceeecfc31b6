"""Channel groups for per-layer rules, and cutting chosen channels by index.

The similarity-graph method (Li et al. 2023) and GSparsity's zero groups decide which channels
to remove themselves, layer by layer; these helpers find the Torch-Pruning groups whose channels
one conv must decide for, and cut given indices through Torch-Pruning's dependency graph so the
coupled layers follow (prunecli/pruning/structured.py builds the graph and records the cuts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch_pruning as tp

from prunecli.profiling.counts import hooked_forward
from prunecli.pruning.deadline import phase
from prunecli.pruning.graphcheck import refuse_sliced_concats
from prunecli.pruning.structured import (
    _cut_layers,
    _graph,
    _left_alone,
    _out_channels,
    _record,
    example_input,
)


@dataclass
class ChannelGroup:
    """Output channels Torch-Pruning must remove together, and the conv that decides for them."""

    decider: str
    members: list[str]
    channels: int


def channel_groups(model: nn.Module, input_shape, protected: tuple[str, ...], ignore=()) -> list[ChannelGroup]:
    """Coupled output-channel groups whose channels a per-layer rule may choose.

    A residual stage couples its stem or projection conv with every block's second conv; one
    conv must decide for all. We take a 1×1 projection when the group has one (it sees the
    stage input), else the conv that runs first — the stem in stage 1 (Li et al. 2023 §1.3 of
    our spec). Groups with no Conv2d (e.g. a hidden Linear) are left alone.
    """
    graph = _graph(model, input_shape)
    names = {m: n for n, m in model.named_modules()}
    order = _execution_order(model, input_shape)
    ignored = _left_alone(model, protected, list(ignore))
    refuse_sliced_concats(model, graph, ignored)
    out = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        convs = [d.target.module for d, _ in group if graph.is_out_channel_pruning_fn(d.handler)
                 and isinstance(d.target.module, nn.Conv2d) and d.target.module in names]
        convs = list(dict.fromkeys(convs))
        if not convs:
            continue
        ones = [c for c in convs if c.kernel_size == (1, 1)]
        decider = ones[0] if ones and len(convs) > 1 else min(convs, key=lambda c: order.get(c, 1 << 30))
        out.append((order.get(decider, 1 << 30), ChannelGroup(names[decider], [names[c] for c in convs],
                                                              decider.out_channels)))
    return [group for _, group in sorted(out, key=lambda item: item[0])]


def _execution_order(model, input_shape) -> dict:
    order: dict = {}

    def seen(module, inputs, output) -> None:  # a hook must return None, or it replaces the output
        order.setdefault(module, len(order))

    hooks = [m.register_forward_hook(seen) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooked_forward(model, example_input(input_shape), hooks)
    return order


def prune_indices(model: nn.Module, input_shape, removed: dict[str, list[int]],
                  extra: dict[str, dict] | None = None) -> list[dict]:
    """Remove the given output channels of each deciding conv or Linear (and all they are coupled with).

    Indices refer to the unpruned model: a conv's own channels are not renumbered by cutting
    another group. Each group is built from the graph right before it is cut, so offsets into
    concatenations (DenseNet) account for the channels already removed from them.
    """
    graph = _graph(model, input_shape)
    named = dict(model.named_modules())
    names = {m: n for n, m in named.items()}
    before = {m: _out_channels(m) for m in names}
    records = []
    with phase("pruning"):
        for name, idxs in removed.items():
            if not idxs:
                continue
            fn = tp.prune_linear_out_channels if isinstance(named[name], nn.Linear) else tp.prune_conv_out_channels
            group = graph.get_pruning_group(named[name], fn, sorted(idxs))
            details = (extra or {}).get(names[group[0].dep.target.module])
            for mod, idxs in _cut_layers(group, graph, before):
                records.append({**_record(names[mod], mod, before[mod], sorted(set(idxs)), None),
                                "details": details})
            group.prune()
    return records
