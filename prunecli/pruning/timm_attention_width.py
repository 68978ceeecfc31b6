"""Attention whose inner width is tied to its input width, pruned together with the residual stream.

Five timm attention variants compute the head split from the input width or reshape the heads
back to it, so the q/k/v/proj inner width must always equal the embedding width:

* PVT-v2 `pvt_v2.Attention` (Wang et al., CVMJ 2022): `head_dim = dim // num_heads`; the
  spatial-reduction conv's output is reshaped with the input width `C`, and the heads with
  `reshape(B, N, C)`.
* MetaFormer `metaformer.Attention` (CAFormer; Yu et al., TPAMI 2024): `num_heads = dim // 32`,
  heads reshaped back with `reshape(B, N, C)`.
* CoaT `coat.FactorAttnConvRelPosEnc` (Xu et al., ICCV 2021): `reshape(..., C // num_heads)`,
  and a depthwise-conv relative position encoding (`ConvRelPosEnc`, shared by a stage's blocks)
  split into head groups by `channel_splits`.
* XCiT `xcit.XCA` (El-Nouby et al., NeurIPS 2021; transposed, channel-to-channel attention per
  head): `reshape(B, N, 3, num_heads, C // num_heads)` and `reshape(B, N, C)`; and the
  class attention XCiT borrows from CaiT (`cait.ClassAttn`, Touvron et al., ICCV 2021): separate
  q/k/v projections reshaped with `C // num_heads`. (EdgeNeXt's `CrossCovarianceAttn` is the
  same attention, but its block's Res2Net-style `chunk` + add, which couples channel c of every
  chunk, is mis-mapped by Torch-Pruning even without the attention; it stays refused in
  `timm_blocks.py`, with `--ignore '*.xca'`.)

Torch-Pruning sees their q/k/v/proj as separate layers: the inner width becomes its own
channel group, rounded apart from the residual (caformer_s18: 224 channels, 10 heads × 22),
so the pruned forward fails or reshapes heads wrongly. Since the widths are tied, we make
them one group: each attention is a customized leaf (`customized_pruners`) whose input and
output channels are the residual channels, and whose pruner cuts the inner q/k/v (and PVT's
reduction conv and norm, CoaT's position-encoding convs) at the same indices. The attention is
also given `num_heads` channel groups (Torch-Pruning's `out_channel_groups`, through the
extension's fifth item), so the whole residual group is cut at the same in-head positions in
every head of `head_dim`, which is
exactly what keeps the inner width splitting evenly into heads (each head loses the same
channels, in q, k and v alike, so the q·k pairs and the v→proj channels stay aligned). (Not through the pruner's `num_heads`: for an
attention group Torch-Pruning re-roots it at a downstream Linear, whose local ranking scope then
collides with that Linear's own group and one of the two is silently skipped.) The head count is
kept; `head_dim` (and PVT's `dim`, MetaFormer's `attention_dim`, CoaT's
`channel_splits`) follow the new width, and `scale` becomes `head_dim ** -0.5`, which the fused
`scaled_dot_product_attention` path computes anyway. The pruner refuses (one error line, nothing
written) a cut that does not remove the same number of channels from every head.

Limitation: Torch-Pruning's magnitude importance scores only the layers it knows, so the
residual channels are ranked by the norms, MLPs and patch embeddings around these leaves, not by
the attention's own weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
import torch_pruning as tp

from prunecli.pruning.extensions import register_after_prune, register_extension


def _heads_even(width: int, heads: int, idxs: Sequence[int], where: str) -> None:
    """Every head of `width // heads` channels must lose the same number of channels."""
    head_dim = width // heads
    lost = [0] * heads
    for i in idxs:
        lost[i // head_dim] += 1
    if len(set(lost)) > 1:
        raise RuntimeError(f"{where}: the cut removes {lost} channels from its {heads} heads; "
                           "a tied attention needs the same number from every head")


def _repeat(idxs: Sequence[int], width: int, parts: int) -> list[int]:
    """Indices `idxs` in each of `parts` stacked blocks of `width` outputs (fused q/k/v)."""
    return [i + k * width for k in range(parts) for i in idxs]


def _linear(layer: nn.Linear, idxs: list[int], out_idxs: list[int] | None = None) -> tuple[nn.Module, list[int]]:
    """Cut inputs `idxs` and outputs `out_idxs` (default the same); returns (layer, outputs cut)."""
    out = idxs if out_idxs is None else out_idxs
    tp.prune_linear_in_channels(layer, idxs)
    tp.prune_linear_out_channels(layer, out)
    return layer, out


_CUTS: list[tuple[nn.Module, list[int]]] = []
"""(inner Linear/Conv, output channels it lost) since the last prune began, for the masks sidecar."""


class TiedAttentionPruner(tp.pruner.function.BasePruningFunc):
    """One attention module as a leaf whose in, inner and out channels are the residual's."""

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        idxs = sorted(int(i) for i in idxs)
        width = self.get_out_channels(layer)
        _heads_even(width, layer.num_heads, idxs, type(layer).__name__)
        _CUTS.extend(self.cut(layer, idxs, width))
        return layer

    prune_in_channels = prune_out_channels  # input, inner and output channels: one dependency

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.proj.out_features

    get_in_channels = get_out_channels

    def cut(self, layer: nn.Module, idxs: list[int], width: int) -> list[tuple[nn.Module, list[int]]]:
        """Cut `layer` at residual channels `idxs`; returns each inner layer with the outputs it lost."""
        raise NotImplementedError


class FusedQKVPruner(TiedAttentionPruner):
    """metaformer.Attention, coat.FactorAttnConvRelPosEnc, edgenext.CrossCovarianceAttn: fused qkv."""

    def cut(self, layer: nn.Module, idxs: list[int], width: int) -> list[tuple[nn.Module, list[int]]]:
        cuts = [_linear(layer.qkv, idxs, _repeat(idxs, width, 3)), _linear(layer.proj, idxs)]
        new = width - len(idxs)
        if isinstance(getattr(layer, "head_dim", None), int):  # MetaFormer: reshaped with head_dim
            layer.head_dim = new // layer.num_heads
        if isinstance(getattr(layer, "attention_dim", None), int):
            layer.attention_dim = new
        if isinstance(getattr(layer, "scale", None), float):
            layer.scale = (new // layer.num_heads) ** -0.5
        crpe = getattr(layer, "crpe", None)
        if crpe is not None and sum(crpe.channel_splits) == width:  # shared by a stage: cut once
            cuts.extend(_cut_crpe(crpe, idxs))
        return cuts


def _cut_crpe(crpe: nn.Module, idxs: list[int]) -> list[tuple[nn.Module, list[int]]]:
    """CoaT's ConvRelPosEnc: depthwise convs over consecutive head groups of v's channels."""
    start, splits, cuts = 0, [], []
    for conv, size in zip(crpe.conv_list, crpe.channel_splits):
        local = [i - start for i in idxs if start <= i < start + size]
        if local:
            tp.prune_depthwise_conv_out_channels(conv, local)
            cuts.append((conv, local))
        splits.append(conv.out_channels)
        start += size
    crpe.channel_splits = splits
    return cuts


class PvtAttentionPruner(TiedAttentionPruner):
    """pvt_v2.Attention: separate q and kv projections, optional spatial reduction conv + norm."""

    def cut(self, layer: nn.Module, idxs: list[int], width: int) -> list[tuple[nn.Module, list[int]]]:
        cuts = [_linear(layer.q, idxs), _linear(layer.kv, idxs, _repeat(idxs, width, 2)), _linear(layer.proj, idxs)]
        if layer.sr is not None:  # its output is reshaped with the input width C
            tp.prune_conv_in_channels(layer.sr, idxs)
            tp.prune_conv_out_channels(layer.sr, idxs)
            tp.prune_layernorm_out_channels(layer.norm, idxs)
            cuts.append((layer.sr, idxs))
        layer.dim = width - len(idxs)
        layer.head_dim = layer.dim // layer.num_heads
        layer.scale = layer.head_dim**-0.5
        return cuts


class SeparateQKVPruner(TiedAttentionPruner):
    """cait.ClassAttn (CaiT, XCiT class-attention blocks): q, k, v projections, `C // num_heads` heads."""

    def cut(self, layer: nn.Module, idxs: list[int], width: int) -> list[tuple[nn.Module, list[int]]]:
        layer.scale = ((width - len(idxs)) // layer.num_heads) ** -0.5
        return [_linear(linear, idxs) for linear in (layer.q, layer.k, layer.v, layer.proj)]


def _tied_types() -> dict[type, TiedAttentionPruner]:
    from timm.models import cait, coat, metaformer, pvt_v2, xcit

    fused = FusedQKVPruner()
    return {pvt_v2.Attention: PvtAttentionPruner(), metaformer.Attention: fused,
            coat.FactorAttnConvRelPosEnc: fused, xcit.XCA: fused, cait.ClassAttn: SeparateQKVPruner()}


@register_extension
def tied_attention(model: nn.Module):
    """Customized pruners and head counts for the tied-width attentions in `model`."""
    _CUTS.clear()  # a new prune begins (a failed one may have left entries)
    pruners = _tied_types()
    found = [m for m in model.modules() if type(m) in pruners]
    if not found:
        return {}, [], [], {}, {}
    for m in found:
        width = pruners[type(m)].get_out_channels(m)
        if width % m.num_heads:
            raise RuntimeError(f"{type(m).__name__}: width {width} does not split into {m.num_heads} heads")
    used = {type(m) for m in found}
    return {t: p for t, p in pruners.items() if t in used}, [], [], {}, {m: m.num_heads for m in found}


@register_after_prune
def record_inner_cuts(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """Report the inner layers the leaves cut, so the masks sidecar lists their channels too."""
    for layer, idxs in _CUTS:
        removed.setdefault(layer, []).extend(idxs)
    _CUTS.clear()
