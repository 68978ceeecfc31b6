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
  fixed offsets; `proj` reads heads × value dims. Torch-Pruning ties `qkv`'s outputs 1:1 to
  `proj`'s inputs through the reshapes (1536 rows vs 1024 columns in efficientformer_l1:
  `index 1024 is out of bounds`) and pulls the (heads, offsets) bias table into the group.
  `SplitHeadQKVPruner` presents `qkv` to Torch-Pruning with the value dims as its output
  channels, numbered as `proj` reads them (h·val_dim + j), and cuts the matching rows; with
  `num_heads` it removes the same value dims in every head (default) or whole heads (their q, k,
  v rows and bias-table row; `--head-ratio`), then updates `num_heads`, `val_dim` and the value
  width (`val_attn_dim` / `out_dim`, whitelisted checkpoint attributes). Key dims are kept:
  queries and keys are not on Torch-Pruning's path from `qkv` to `proj`, so no group scores them.
  Their forward reshapes with these stored widths, never the input's, so the embedding width
  prunes too (`qkv`'s inputs, `proj`'s outputs, the norms).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch.nn as nn
import torch_pruning as tp

from prunecli.pruning.extensions import register_after_prune, register_extension


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


def _value_width_attr(attn: nn.Module) -> str:
    """The stored heads × value width the forward reshapes with (EfficientFormer / TinyViT)."""
    return "val_attn_dim" if hasattr(attn, "val_attn_dim") else "out_dim"


class SplitHeadQKVPruner(tp.pruner.function.BasePruningFunc):
    """A fused qkv split per head into (key, key, value): its output channels are the value dims.

    Torch-Pruning ties `qkv`'s outputs 1:1 to `proj`'s inputs (heads × value dims, channel
    h·val_dim + j); seen through this pruner `qkv` has exactly those outputs, so the tie is
    right: value dim j of head h is row h·(2·key_dim + val_dim) + 2·key_dim + j. A head that
    loses every value dim (whole-head pruning) loses its query and key rows and its bias-table
    row too; `num_heads`, `val_dim` and the value width are updated on the attention.
    """

    TARGET_MODULES = None

    def __init__(self, owners: dict):
        super().__init__()
        self.owners = owners  # qkv Linear → its attention module

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        attn = self.owners[layer]
        heads, key, val = attn.num_heads, attn.key_dim, attn.val_dim
        cut: dict[int, set[int]] = {}
        for i in idxs:
            cut.setdefault(int(i) // val, set()).add(int(i) % val)
        gone_heads = [h for h, dims in cut.items() if len(dims) == val]
        left = {len(cut.get(h, ())) for h in range(heads) if h not in gone_heads}
        if len(left) > 1:
            raise RuntimeError("heads of a split-head attention must keep the same number of value dims")
        per = 2 * key + val
        rows = [h * per + r for h in gone_heads for r in range(per)]
        rows += [h * per + 2 * key + j for h, dims in cut.items() if h not in gone_heads for j in dims]
        origin = _ROWS.setdefault(layer, (list(range(layer.out_features)), []))
        origin[1].extend(origin[0][r] for r in rows)
        gone = set(rows)
        origin[0][:] = [o for r, o in enumerate(origin[0]) if r not in gone]
        tp.prune_linear_out_channels(layer, sorted(rows))
        keep = [h for h in range(heads) if h not in gone_heads]
        if gone_heads:
            bias = attn.attention_biases
            attn.attention_biases = nn.Parameter(bias.data[keep].clone(), requires_grad=bias.requires_grad)
        attn.num_heads = len(keep)
        attn.val_dim = val - (left.pop() if left else 0)
        setattr(attn, _value_width_attr(attn), attn.num_heads * attn.val_dim)
        if hasattr(attn, "key_attn_dim"):
            attn.key_attn_dim = attn.num_heads * key
        attn.attention_bias_cache = {}  # cached (heads, N, N) biases from a forward before pruning
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return tp.prune_linear_in_channels(layer, idxs)

    def get_out_channels(self, layer: nn.Module) -> int:
        attn = self.owners[layer]
        return attn.num_heads * attn.val_dim

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.in_features


_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""qkv → (original index of each row left, original rows removed): Torch-Pruning records the
value-channel indices it asked for; `_record_rows` replaces them with the rows really cut."""


@register_after_prune
def _record_rows(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """The masks sidecar lists a split-head qkv's removed rows, not its value-channel indices."""
    for layer in list(removed):
        if layer in _ROWS:
            removed[layer] = sorted(_ROWS.pop(layer)[1])


class SplitHeadQKV(nn.Linear):
    """Marker: the fused key/key/value projection of an EfficientFormer / TinyViT attention."""


@register_extension
def split_head_attention(model: nn.Module):
    """EfficientFormer / TinyViT attention: value dims (or whole heads) and the embedding prune."""
    found = [m for m in model.modules() if isinstance(m, _split_head_attention_types())]
    if not found:
        return {}, [], []
    owners = {}
    for attn in found:
        if type(attn.qkv) is nn.Linear:
            attn.qkv.__class__ = SplitHeadQKV
        owners[attn.qkv] = attn
    biases = [m.attention_biases for m in found]
    # Bias tables: declared (dim 0 = heads) and ignored; the qkv pruner cuts a removed head's row.
    return ({SplitHeadQKV: SplitHeadQKVPruner(owners)}, [(p, 0) for p in biases], biases,
            {attn.qkv: attn.num_heads for attn in found})


@register_after_prune
def _unmark(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """Give the marked layers their own class back once pruned: MAC counters (Torch-Pruning's
    `count_ops_and_params`) look layers up by exact type and would skip a marker subclass."""
    for m in model.modules():
        if type(m) in _MARKERS.values() or type(m) is SplitHeadQKV:
            m.__class__ = type(m).__bases__[0]


@register_extension
def fastvit_attention(model: nn.Module):
    """FastViT's attention (SA variants) reshapes its heads back with its input width: keep its qkv.

    `x.transpose(1, 2).reshape(B, N, C)`, C the input width, needs heads × head_dim == C. Every
    FastViT stage width is kept (it feeds a channel-multiplier conv, above), so the head dims must
    stay too; the attention's qkv is an ignored layer, its MLPs and the rest still prune.
    """
    from timm.models.fastvit import Attention

    return {}, [], [m.qkv for m in model.modules() if isinstance(m, Attention)]
