"""Torch-Pruning extensions for timm's non-attention building blocks (see `extensions.py`).

What each handles, and why Torch-Pruning alone fails on it (timm 1.0, Torch-Pruning 1.6):

* `metaformer.Scale` (PoolFormer, ConvFormer, CAFormer; Yu et al., CVPR 2022 / TPAMI 2024):
  the per-channel LayerScale / ResScale vector is reshaped with a stored `shape` tuple
  (`scale.view(self.shape)`). Torch-Pruning cuts the bare parameter but not the tuple, so the
  pruned forward fails (`shape '[64, 1, 1]' is invalid`). `ScalePruner` cuts both; `shape`
  is a whitelisted checkpoint attribute so a reload rebuilds it. (ConvNeXt-style `gamma`
  vectors applied with `reshape(1, -1, 1, 1)` need nothing: Torch-Pruning's unwrapped-parameter
  detection cuts them along their only dimension.)
* Token-mixing MLPs (MLP-Mixer's `MixerBlock.mlp_tokens`, ResMLP's `ResBlock.linear_tokens`;
  Tolstikhin et al., NeurIPS 2021; Touvron et al., TPAMI 2022): these act on the token axis of
  a transposed tensor. Torch-Pruning reads the transpose as an element-wise op and couples
  the token axis with the channels (`index 16 is out of bounds`). We give each such module a
  forward-identical marker subclass and register a pruner for it that leaves it unchanged: a
  token mixer treats every channel alike, so removing channel c removes row c of its
  input and output and no weight. Channels (and the channel MLPs' hidden width) are pruned;
  the token dimension, the number of patches, never is.
* CSPNet's `CrossStage` (Wang et al., CVPRW 2020; cspdarknet53, cspresnet50): `conv_exp`'s
  output is split with the fixed `expand_chs // 2`, which pruning cannot keep equal, and
  Torch-Pruning mis-maps indices across the split and the residual blocks after it. We leave
  `conv_exp` unpruned; the other convs of the stage still are.
* Refused (one line before pruning, `--ignore` lifts it): gMLP's `SpatialGatingUnit` (Liu et
  al., NeurIPS 2021; halves of its channels must stay equal, its Linear mixes tokens),
  EdgeNeXt's transposed attention `CrossCovarianceAttn` (Maaz et al., ECCVW 2022): its
  block's Res2Net-style `chunk` + add couples channel c of every chunk, which Torch-Pruning
  mis-maps (an index error even with the attention made a leaf, see
  `timm_attention_width.py`); with the attention ignored its stages' residual width stays and
  the rest of EdgeNeXt (conv encoders, split depth-wise convs, MLPs) prunes. Refused outright: `CrossStage3` (cs3* CSP models), for which Torch-Pruning cannot build the graph
  (the split half that goes straight into the concat has no inferable width).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
import torch_pruning as tp

from prunecli.pruning.extensions import Unsupported, register_extension


class ScalePruner(tp.pruner.function.BasePruningFunc):
    """timm `metaformer.Scale`: cut the channel vector and its view shape together."""

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        gone = set(idxs)
        keep = [i for i in range(layer.scale.shape[0]) if i not in gone]
        trainable = layer.scale.requires_grad
        layer.scale = self._prune_parameter_and_grad(layer.scale, keep, 0)  # keeps calibration gradients
        layer.scale.requires_grad_(trainable)
        layer.shape = (len(keep), *tuple(layer.shape)[1:])
        return layer

    prune_in_channels = prune_out_channels  # one vector: input and output channels are the same

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.scale.shape[0]

    get_in_channels = get_out_channels


class TokenMixerPruner(tp.pruner.function.BasePruningFunc):
    """A token-mixing layer: channels pass through it one by one, so pruning them changes nothing here."""

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return layer

    prune_in_channels = prune_out_channels  # channel c in is channel c out: one dependency

    def get_out_channels(self, layer: nn.Module) -> None:
        return None  # its own widths are token counts, not channels

    get_in_channels = get_out_channels


_MARKERS: dict[type, type] = {}


def _token_marker(cls: type) -> type:
    """A subclass of `cls` adding nothing, so Torch-Pruning can tell token mixers by type."""
    if cls not in _MARKERS:
        _MARKERS[cls] = type(f"TokenMixing{cls.__name__}", (cls,), {"__doc__": "token-mixing " + cls.__name__})
    return _MARKERS[cls]


def _token_mixers(model: nn.Module) -> list[nn.Module]:
    from timm.models.mlp_mixer import MixerBlock, ResBlock

    found = []
    for m in model.modules():
        if isinstance(m, MixerBlock):
            found.append(m.mlp_tokens)
        elif isinstance(m, ResBlock):
            found.append(m.linear_tokens)
    return found


@register_extension
def token_mixing(model: nn.Module):
    """MLP-Mixer / ResMLP: token-mixing layers are opaque to channel pruning."""
    custom = {}
    for module in _token_mixers(model):
        if type(module) not in _MARKERS.values():
            module.__class__ = _token_marker(type(module))
        custom[type(module)] = TokenMixerPruner()
    return custom, [], []


@register_extension
def metaformer_scale(model: nn.Module):
    """PoolFormer / ConvFormer / CAFormer LayerScale and ResScale vectors."""
    from timm.models.metaformer import Scale

    if not any(isinstance(m, Scale) for m in model.modules()):
        return {}, [], []
    return {Scale: ScalePruner()}, [], []


@register_extension
def csp_stages(model: nn.Module):
    """CSPNet: keep each CrossStage's split conv whole; refuse CrossStage3."""
    from timm.models.cspnet import CrossStage, CrossStage3

    names = {m: n for n, m in model.named_modules()}
    cs3 = [names[m] for m in model.modules() if isinstance(m, CrossStage3)]
    if cs3:
        raise Unsupported("CrossStage3 (timm cs3* CSPNet stages)", cs3, None)
    return {}, [], [m.conv_exp for m in model.modules() if isinstance(m, CrossStage)]


@register_extension
def edgenext_xca(model: nn.Module):
    """EdgeNeXt's cross-covariance attention: refused unless `--ignore`d."""
    from timm.models.edgenext import CrossCovarianceAttn

    paths = [n for n, m in model.named_modules() if isinstance(m, CrossCovarianceAttn)]
    if paths:
        leaf = sorted({p.rsplit(".", 1)[-1] for p in paths})
        raise Unsupported("CrossCovarianceAttn (EdgeNeXt transposed attention)", paths,
                          " ".join(f"--ignore '*.{name}'" for name in leaf))
    return {}, [], []


def _globs(paths: list[str]) -> str:
    """`--ignore` options covering `paths`, one per pattern with the last index as `*`."""
    patterns = []
    for path in paths:
        parts = path.split(".")
        last = max((i for i, p in enumerate(parts) if p.isdigit()), default=None)
        if last is not None:
            parts[last] = "*"
        patterns.append(".".join(parts))
    return " ".join(f"--ignore '{p}'" for p in dict.fromkeys(patterns))


@register_extension
def spatial_gating(model: nn.Module):
    """gMLP's spatial gating unit: refused unless `--ignore`d.

    It splits its input channels in two halves (`chunk(2, dim=-1)`) and mixes tokens with a
    Linear over the transposed half; Torch-Pruning neither keeps the halves equal nor tells
    the token axis from the channels (gmlp_ti16_224: `normalized_shape=[96] … size [.., 93]`).
    """
    from timm.models.mlp_mixer import SpatialGatingUnit

    paths = [n for n, m in model.named_modules() if isinstance(m, SpatialGatingUnit)]
    if paths:
        raise Unsupported("SpatialGatingUnit (gMLP)", paths, _globs(paths))
    return {}, [], []
