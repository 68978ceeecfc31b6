"""Torch-Pruning extensions for timm's split, multi-branch and weight-standardised convolutions (see `extensions.py`).

What each handles, and why Torch-Pruning alone fails on it (timm 1.0, Torch-Pruning 1.6):

* `ScaledStdConv2d` / `ScaledStdConv2dSame` (NFNets, NF-RegNets; Brock et al., ICLR 2021 and
  ICML 2021): a Conv2d whose forward standardises each output filter over its fan-in and
  multiplies it by a per-output-channel `gain` (shape `(out, 1, 1, 1)`) and the constant
  `scale = gamma / sqrt(fan_in)`. Torch-Pruning's conv pruner cuts `weight` and `bias` but not
  `gain` (`weight should contain 28 elements not 40`). A graph fix cuts `gain` at the indices
  of the filters each group removed, right after Torch-Pruning cut them (a customised pruner
  would hide these convs from Torch-Pruning's importance, which recognises its own conv
  pruner only). What is exact and what changes:
  - output channels: exact. Each filter is standardised on its own, so a kept filter's
    standardised weight, gain and bias are bit-for-bit what they were.
  - input channels: the mean and variance of a kept filter are now taken over its kept
    fan-in (that is the layer's definition; any weight the forward sees is standardised), so
    its standardised weights shift slightly. `scale` keeps the ORIGINAL fan-in
    (`gamma / sqrt(fan_in before pruning)`): it is a constant of the trained network, not
    re-derived, so the kept weights keep their magnitude. A reload rebuilds the unpruned
    layer (the constructor computes exactly that scale), sets the pruned sizes and loads the
    cut weights, so the reloaded layer computes what the pruned one did.
* `MixedConv2d` (MixNet; Tan & Le, BMVC 2019): the input is split with the fixed sizes
  `splits` and each piece goes to its own kernel size's conv; the outputs are concatenated.
  Torch-Pruning maps a split's pieces to its consumers by the order of the split node's
  `outputs`, which is the order its backward traversal met them (last piece first), not the
  order of the pieces: channels cut from the producer were cut from the wrong piece's conv
  (`expected input[1, 7, 16, 16] to have 8 channels`). A graph fix sorts the outputs of each
  split feeding these blocks by the piece they read (autograd's `output_nr`), and after each
  cut gives the split its pieces' current sizes (Torch-Pruning keeps the traced sizes, so the
  second group cut through a split is mapped with stale offsets: `index 11` into 8 channels).
  It also leaves `splits`, `in_channels` and `out_channels` stale
  (`split_sizes … [8, 8]` on 11 channels); an after-prune hook re-derives them from the
  sub-convs, and `splits` is a whitelisted checkpoint size, so a reload rebuilds it.
* `Bottle2neck` (Res2Net; Gao et al., TPAMI 2019): `conv1`'s output is split into `scale`
  chunks of the fixed `width`; chunk i is added to the previous chunk's conv output before its
  own 3×3 conv, and the chunks are concatenated again before `conv3`. Every chunk must keep
  the same width, and the split has the ordering and stale-size problems above (`index 156 is
  out of bounds for dimension 0 with size 104`), and where the last chunk goes straight into
  the concatenation, Torch-Pruning's traced concat sizes count the whole split for it (104
  instead of 26), so it maps no offsets and ties all four chunk outputs together; the graph
  fix has them re-inferred from the corrected split. `conv1` gets a marker subclass whose pruner
  reports `scale` output channel groups, so Torch-Pruning averages importance over the chunks
  and removes the same in-chunk positions from each (as it does for a grouped conv; that
  pruner is Torch-Pruning's conv pruner, only `conv1`'s own weights drop out of the L1 score,
  which the chunk convs, norms and `conv3` still carry); the split gets the graph fix, and
  `width` follows the chunks after pruning (whitelisted, so a reload rebuilds it).
* `SelectiveKernel` (SKNet; Li et al., CVPR 2019): with `split_input` the input is split into
  `num_paths` equal halves (`in_channels // num_paths`, one per kernel path); the paths' outputs
  are stacked, and `SelectiveKernelAttn` turns their sum into one selection weight per path and
  channel: `fc_select` has `num_paths × C` outputs viewed as `(paths, C)`. Torch-Pruning reads
  that view as if output c were channel c (the forward failed on the first conv it fed). The
  attention gets a pruner that cuts `fc_reduce`'s input c and `fc_select`'s outputs `p·C + c`
  for every path (its reduced width is not pruned); each path conv gets a marker subclass
  whose pruner reports `num_paths` input channel groups, so the channels feeding the block are
  cut at the same positions of every half (as for a grouped conv); the split gets the graph
  fix above; `in_channels` / `out_channels` follow the paths after pruning (plain ints a
  checkpoint restores). The path convs' own weights and the attention's drop out of the L1
  score (customised layers); the paths' norms and the neighbouring convs still carry it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp

from prunecli.pruning.extensions import register_after_prune, register_extension, register_graph_fix


@register_graph_fix
def scaled_std_conv_gain(model: nn.Module, graph, group) -> None:
    """NFNet convs: after a group is cut, cut each ScaledStdConv2d's `gain` at the filters it lost."""
    if group is None:
        return
    from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame

    for dep, idxs in group:
        layer = dep.target.module
        if not isinstance(layer, (ScaledStdConv2d, ScaledStdConv2dSame)) or layer.gain.shape[0] == layer.out_channels:
            continue  # not this family, or its gain was already cut (a depthwise conv appears as input and output)
        if not graph.is_out_channel_pruning_fn(dep.handler):
            continue
        gone = {int(i) for i in idxs}
        keep = [i for i in range(layer.gain.shape[0]) if i not in gone]
        if len(keep) != layer.out_channels:
            raise RuntimeError(f"{type(layer).__name__}: {len(keep)} gains kept for {layer.out_channels} filters")
        layer.gain = _kept(layer.gain, keep)


def _kept(param: nn.Parameter, keep: list[int]) -> nn.Parameter:
    """`param` cut to the rows `keep` along dim 0, with its gradient (calibration) and trainability."""
    index = torch.tensor(keep, dtype=torch.long, device=param.device)
    out = nn.Parameter(param.data.index_select(0, index).clone(), requires_grad=param.requires_grad)
    if param.grad is not None:
        out.grad = param.grad.index_select(0, index).clone()
    return out


@register_after_prune
def sync_mixed_conv(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """MixedConv2d: split sizes and widths follow the sub-convs Torch-Pruning cut."""
    from timm.layers.mixed_conv2d import MixedConv2d

    for m in model.modules():
        if not isinstance(m, MixedConv2d):
            continue
        convs = list(m.values())
        splits = tuple(c.in_channels for c in convs)
        if list(splits) != list(m.splits):
            m.splits = splits
        m.in_channels, m.out_channels = sum(splits), sum(c.out_channels for c in convs)


def _piece(split_node, consumer) -> int:
    """Which of the split's outputs `consumer` reads (autograd's output_nr; the lowest if several)."""
    found = [nr for fn, nr in getattr(consumer.grad_fn, "next_functions", ()) if fn is split_node.grad_fn]
    return min(found, default=1 << 30)


def _set_split_sizes(node, sizes: list[int]) -> None:
    """The sizes and offsets Torch-Pruning's split index mapping reads (set from the trace, never updated)."""
    node.module.split_sizes = list(sizes)
    node.module.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]


def _mixed_conv_split(graph, mixed) -> None:
    """The split feeding a MixedConv2d: consumers in piece order, sizes = its convs' current inputs."""
    from torch_pruning import ops

    convs = list(mixed.values())
    nodes = [graph.module2node.get(c) for c in convs]
    splits = {id(i): i for n in nodes if n is not None for i in n.inputs if i.type == ops.OPTYPE.SPLIT}
    for node in splits.values():
        node.outputs.sort(key=lambda out: _piece(node, out))
        if len(node.outputs) == len(convs) and [o.module for o in node.outputs] == convs:
            _set_split_sizes(node, [c.in_channels for c in convs])


@register_graph_fix
def split_index_mapping(model: nn.Module, graph, group) -> None:
    """Keep Torch-Pruning's split index mapping right for MixedConv2d (see the module docstring)."""
    from timm.layers.mixed_conv2d import MixedConv2d

    for m in model.modules():
        if isinstance(m, MixedConv2d) and len(m) > 1:
            _mixed_conv_split(graph, m)


class ChunkedConvPruner(tp.pruner.function.ConvPruner):
    """Torch-Pruning's conv pruner, reporting Res2Net's `scale` chunks as output channel groups."""

    def get_out_channel_groups(self, layer: nn.Module) -> int:
        return int(getattr(layer, "res2net_chunks", 1))


class Res2NetConv1(nn.Conv2d):
    """A Bottle2neck's `conv1` (marker: its output is split into equal chunks)."""


def _res2net_blocks(model: nn.Module) -> list:
    from timm.models.res2net import Bottle2neck

    return [m for m in model.modules() if isinstance(m, Bottle2neck) and m.scale > 1]


@register_extension
def res2net_chunks(model: nn.Module):
    """Res2Net: prune the same positions of every chunk of `conv1`'s output."""
    blocks = _res2net_blocks(model)
    for block in blocks:
        if type(block.conv1) is nn.Conv2d:
            block.conv1.__class__ = Res2NetConv1
        block.conv1.res2net_chunks = block.scale  # read by ChunkedConvPruner; no state, never saved
    return ({Res2NetConv1: ChunkedConvPruner()} if blocks else {}), [], []


@register_graph_fix
def res2net_split(model: nn.Module, graph, group) -> None:
    """Each Bottle2neck's chunk split: consumers in chunk order, sizes = the chunks' current width."""
    from torch_pruning import ops

    for block in _res2net_blocks(model):
        first = graph.module2node.get(block.convs[0])
        if first is None:
            continue
        for node in [i for i in first.inputs if i.type == ops.OPTYPE.SPLIT]:
            node.outputs.sort(key=lambda out: _piece(node, out))
            _set_split_sizes(node, [block.bn1.num_features // block.scale] * block.scale)
            for out in node.outputs:  # the last chunk goes straight into the concat, whose traced
                if out.type == ops.OPTYPE.CONCAT:  # sizes took the whole split for it: re-infer them
                    out.module.concat_sizes = None


@register_after_prune
def sync_res2net_width(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """Bottle2neck splits with `width`: it follows the chunk convs Torch-Pruning cut."""
    for block in _res2net_blocks(model):
        width = block.bn1.num_features // block.scale
        if block.bn1.num_features != width * block.scale or block.convs[0].in_channels != width:
            raise RuntimeError(f"Res2Net chunks of unequal width after pruning ({block.bn1.num_features} / {block.scale})")
        block.width = width


class SplitInputConvPruner(tp.pruner.function.ConvPruner):
    """Torch-Pruning's conv pruner, reporting a SelectiveKernel's paths as input channel groups."""

    def get_in_channel_groups(self, layer: nn.Module) -> int:
        return int(getattr(layer, "sk_paths", 1))


class SelectiveKernelPathConv(nn.Conv2d):
    """A SelectiveKernel path's conv when the block splits its input (marker)."""


class SelectiveKernelAttnPruner(tp.BasePruningFunc):
    """SelectiveKernelAttn: channel c is fc_reduce's input c and fc_select's outputs p·C + c."""

    def prune_out_channels(self, layer: nn.Module, idxs) -> nn.Module:
        channels = self.get_out_channels(layer)
        tp.prune_conv_in_channels(layer.fc_reduce, list(idxs))
        tp.prune_conv_out_channels(layer.fc_select, [p * channels + int(i) for p in range(layer.num_paths) for i in idxs])
        return layer

    prune_in_channels = prune_out_channels  # input channel c is output channel c

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.fc_reduce.in_channels

    get_in_channels = get_out_channels


def _sk_blocks(model: nn.Module) -> list:
    from timm.layers.selective_kernel import SelectiveKernel

    return [m for m in model.modules() if isinstance(m, SelectiveKernel)]


@register_extension
def selective_kernel(model: nn.Module):
    """SKNet: the attention's per-path selection vectors follow the channels; split inputs stay even."""
    from timm.layers.selective_kernel import SelectiveKernelAttn

    blocks = _sk_blocks(model)
    if not blocks:
        return {}, [], []
    custom: dict = {SelectiveKernelAttn: SelectiveKernelAttnPruner()}
    for block in blocks:
        if not block.split_input:
            continue
        for path in block.paths:
            if type(path.conv) is nn.Conv2d:
                path.conv.__class__ = SelectiveKernelPathConv
            path.conv.sk_paths = block.num_paths  # read by SplitInputConvPruner; no state, never saved
            custom[SelectiveKernelPathConv] = SplitInputConvPruner()
    return custom, [], []


@register_graph_fix
def selective_kernel_split(model: nn.Module, graph, group) -> None:
    """A SelectiveKernel's input split: consumers in path order, sizes = the path convs' current inputs."""
    from torch_pruning import ops

    for block in _sk_blocks(model):
        if not block.split_input:
            continue
        convs = [p.conv for p in block.paths]
        first = graph.module2node.get(convs[0])
        for node in [i for i in (first.inputs if first else []) if i.type == ops.OPTYPE.SPLIT]:
            node.outputs.sort(key=lambda out: _piece(node, out))
            _set_split_sizes(node, [c.in_channels for c in convs])


@register_after_prune
def sync_selective_kernel(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """SelectiveKernel splits with `in_channels // num_paths`: widths follow the paths Torch-Pruning cut."""
    for block in _sk_blocks(model):
        ins = {p.conv.in_channels for p in block.paths}
        if block.split_input and len(ins) != 1:
            raise RuntimeError(f"SelectiveKernel paths of unequal input width after pruning ({sorted(ins)})")
        block.in_channels = ins.pop() * (block.num_paths if block.split_input else 1)
        block.out_channels = block.paths[0].conv.out_channels
