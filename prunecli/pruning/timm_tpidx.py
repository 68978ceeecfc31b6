"""Torch-Pruning extensions for timm models that fail with an IndexError inside a group (issue 12).

* **Depthwise convs with a channel multiplier** (`groups == in_channels`, `out_channels = k ·
  in_channels`, k > 1): FastViT's patch-embedding `ReparamLargeKernelConv` and `final_conv`
  (Vasu et al., ICCV 2023), PiT's `ConvHeadPooling` (Heo et al., ICCV 2021). Input channel i
  feeds output channels k·i … k·i + k − 1 only, so removing it removes its k outputs and the
  channels after them: a k:1 index map between two channel groups. Torch-Pruning couples a
  layer's channels 1:1 only; it scores such a conv's input as a plain conv's (its L1 importance
  reads one value per input and indexes it with every residual channel: `index 1 is out of
  bounds for dimension 0 with size 1`) and would then cut inputs without their groups. We keep
  such a conv's channels and the widths on both sides of it (the residual streams it joins):
  a marker subclass whose pruner couples its input and output channels, listed in
  `ignored_layers`, so Torch-Pruning never prunes the group holding it. The layers inside those
  streams' blocks (MLP hidden widths, SE widths, head dims where the forward allows) still
  prune. FastViT's attention (SA variants) reshapes its heads back with its input width, so with
  that width kept its head dims are kept too.
* **Attention with a fused qkv split per head into key/key/value dims and per-head bias
  tables**: EfficientFormer's `Attention` (Li et al., NeurIPS 2022) and TinyViT's `Attention`
  (Wu et al., ECCV 2022). `qkv`'s output is viewed as (heads, key + key + value) and split at
  fixed offsets, `proj` reads heads × value dims. Torch-Pruning couples `qkv`'s outputs to
  `proj`'s inputs 1:1 through the reshapes (1536 vs 1024 channels in efficientformer_l1:
  `index 1024 is out of bounds`) and pulls the (heads, offsets) bias table into the group. Their
  forward reshapes the heads back with a stored width (`val_attn_dim`, `out_dim`), never with
  the input's, so the embedding width is free: we keep each attention's inner widths (its `qkv`
  is an ignored layer, so the group of `qkv` outputs and `proj` inputs is never pruned, and the
  bias tables stay whole) and Torch-Pruning prunes the residual width through `qkv`'s inputs,
  `proj`'s outputs and the norms, plus the MLPs and convs. Cutting whole heads (rows of q, k
  and v, bias-table rows, `proj` columns, `num_heads` and the derived sizes) would remove more;
  it needs a head-aware pruner for these modules and is not done here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
import torch_pruning as tp

from prunecli.pruning.extensions import register_extension


class MultiplierConvPruner(tp.pruner.function.BasePruningFunc):
    """A depthwise conv with channel multiplier: input and output channels form one (kept) group.

    Its inputs and outputs are tied by the same pruning function (Torch-Pruning's way of
    saying "cutting one side cuts the other"); the conv is also an ignored layer, so a group
    holding it is never pruned and these functions are never asked to cut anything.
    """

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        if idxs:
            raise RuntimeError("a channel-multiplier depthwise conv is kept whole; its group must not be pruned")
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.in_channels


_MARKERS: dict[type, type] = {}


def _marker(cls: type) -> type:
    """A forward-identical subclass of `cls`, so Torch-Pruning can tell these convs by type."""
    if cls not in _MARKERS:
        _MARKERS[cls] = type(f"ChannelMultiplier{cls.__name__}", (cls,),
                             {"__doc__": "depthwise conv with channel multiplier (" + cls.__name__ + ")"})
    return _MARKERS[cls]


def is_multiplier_conv(m: nn.Module) -> bool:
    """groups == in_channels > 1 and out_channels a larger multiple of in_channels."""
    return (isinstance(m, nn.Conv2d) and not m.transposed and m.groups > 1 and m.groups == m.in_channels
            and m.out_channels > m.in_channels and m.out_channels % m.in_channels == 0)


@register_extension
def multiplier_convs(model: nn.Module):
    """FastViT / PiT (any model): keep channel-multiplier depthwise convs and the widths they join."""
    convs = [m for m in model.modules() if is_multiplier_conv(m)]
    custom = {}
    for conv in convs:
        if type(conv) not in _MARKERS.values():
            conv.__class__ = _marker(type(conv))
        custom[type(conv)] = MultiplierConvPruner()
    return custom, [], convs


def _split_head_attention_types() -> tuple[type, ...]:
    from timm.models import efficientformer, tiny_vit

    return efficientformer.Attention, tiny_vit.Attention


@register_extension
def split_head_attention(model: nn.Module):
    """EfficientFormer / TinyViT attention: keep its inner widths, prune the embedding around it."""
    found = [m for m in model.modules() if isinstance(m, _split_head_attention_types())]
    biases = [m.attention_biases for m in found]
    # Declared (dim 0 = heads) so Torch-Pruning does not guess a dim; ignored, so it never cuts them.
    return {}, [(p, 0) for p in biases], [m.qkv for m in found] + biases


@register_extension
def fastvit_attention(model: nn.Module):
    """FastViT's attention (SA variants) reshapes its heads back with its input width: keep its qkv.

    `x.transpose(1, 2).reshape(B, N, C)`, C the input width, needs heads × head_dim == C. Every
    FastViT stage width is kept (it feeds a channel-multiplier conv, above), so the head dims must
    stay too; the attention's qkv is an ignored layer, its MLPs and the rest still prune.
    """
    from timm.models.fastvit import Attention

    return {}, [], [m.qkv for m in model.modules() if isinstance(m, Attention)]
