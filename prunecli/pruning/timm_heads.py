"""Refusals, in seconds, for timm attentions whose per-head reshapes Torch-Pruning cannot group in bounded time.

Torch-Pruning 1.6 reads a `reshape` of a 4-D (NCHW) tensor whose consumer has another width
as a flatten: every channel index becomes `H·W` indices (`_FlattenIndexMapping`). Attention
blocks that keep NCHW tensors and reshape them into heads therefore blow each channel group up
to hundreds of thousands of index objects, and `Group.has_pruning_op` scans the whole group
for each one: the pruner's group build did not finish in 380 s on

* **EfficientFormerV2** (Li et al., ICCV 2023): `Attention2d` / `Attention2dDownsample`
  reshape `q`/`k`/`v` convs to `(B, heads, -1, N)`, with talking-head convs across heads and
  per-head `attention_biases`. Letting the build run ended in a traceback after ~376 s (the
  one traceback of the sweep): the flatten maps describe channels that do not exist.
* **Visformer** (Chen et al., ICCV 2021): `Attention` reshapes a 1×1-conv qkv to
  `(B, 3, heads, head_dim, H·W)`; the group of its qkv conv alone did not finish in 40 s.
  Its NCHW position embeddings are declared as unwrapped parameters cut along dim 1 (Torch-
  Pruning would cut their last dimension, the width).
* **EfficientViT-MSRA** (Liu et al., CVPR 2023): `CascadedGroupAttention` feeds the input
  head by head (`x.chunk(heads, dim=1)`) and adds head i's output to chunk i+1 before head
  i+1's qkv: the residual stream's channels are coupled, chunk by chunk, with the inside of
  every head (v rows, q/k through their depth-wise convs and the head's matmuls). Every group
  of the residual stream walks into all heads, and the group of one FFN conv did not finish
  in 40 s. Ignoring the attention alone does not help (the residual stream still walks into
  it); only leaving the whole residual stream unpruned does: each block's depth-wise
  convs, FFN output convs and attention, the patch embedding's last conv and the
  downsampling blocks. What is left to prune is each FFN's hidden width.

Each is refused before the pruner is built (`Unsupported`, one line, exit 2) with the
`--ignore` globs that we verified make the prune finish in seconds, run and reload
(`tests/cli/test_timm_heads.py`); with those, the attention's convs and bias tables stay whole.
"""

from __future__ import annotations

import torch.nn as nn

from prunecli.pruning.extensions import Unsupported, register_extension


def _paths(model: nn.Module, types: tuple[type, ...]) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, types)]


def _hint(model: nn.Module, paths: list[str]) -> str:
    from prunecli.pruning.timm_attention import _globs

    return " ".join(f"--ignore '{g}'" for g in _globs(model, paths))


@register_extension
def efficientformerv2_attention(model: nn.Module):
    """EfficientFormerV2's 2-D attention (and its downsampling variant): refused unless `--ignore`d."""
    from timm.models.efficientformer_v2 import Attention2d, Attention2dDownsample

    paths = _paths(model, (Attention2d, Attention2dDownsample))
    if paths:
        raise Unsupported("efficientformer_v2.Attention2d (per-head NCHW reshapes, talking heads, per-head "
                          "attention_biases)", paths, _hint(model, paths))
    return {}, [], []


@register_extension
def visformer_pos_embed(model: nn.Module):
    """Visformer's `pos_embed1..3` are (1, C, H, W): declared with their channel dim, 1.

    Left undeclared, Torch-Pruning cuts their last non-singleton dimension, the width W, and the
    pruned forward fails (`size of tensor a (8) must match ... (6) at non-singleton dimension 3`).
    """
    from timm.models.visformer import Visformer

    params = [p for m in model.modules() if isinstance(m, Visformer)
              for name, p in m.named_parameters(recurse=False) if name.startswith("pos_embed")]
    return {}, [(p, 1) for p in params], []


@register_extension
def visformer_attention(model: nn.Module):
    """Visformer's conv attention: refused unless `--ignore`d."""
    from timm.models.visformer import Attention

    paths = _paths(model, (Attention,))
    if paths:
        raise Unsupported("visformer.Attention (1x1-conv qkv reshaped per head from NCHW)", paths,
                          _hint(model, paths))
    return {}, [], []


def _msra_residual_stream(model: nn.Module) -> list[str]:
    """EfficientViT-MSRA modules that write the residual stream (the globs leave them all unpruned):
    the patch embedding's last conv, each block's depth-wise convs, FFN output convs and attention,
    and each downsampling block whole (its residual convs and PatchMerging)."""
    from timm.models.efficientvit_msra import EfficientVitBlock, EfficientVitMsra, EfficientVitStage

    names = {m: n for n, m in model.named_modules()}
    out: list[str] = []
    for m in model.modules():
        if isinstance(m, EfficientVitMsra):
            out.append(names[m.patch_embed[-1]])
        elif isinstance(m, EfficientVitStage) and not isinstance(m.downsample, nn.Identity):
            out.append(names[m.downsample])
        elif isinstance(m, EfficientVitBlock):
            out += [names[m.dw0], names[m.dw1], names[m.mixer], names[m.ffn0.m.pw2], names[m.ffn1.m.pw2]]
    return out


@register_extension
def efficientvit_msra_attention(model: nn.Module):
    """EfficientViT-MSRA's cascaded group attention: refused unless the residual stream is `--ignore`d."""
    from timm.models.efficientvit_msra import CascadedGroupAttention

    if not _paths(model, (CascadedGroupAttention,)):
        return {}, [], []
    paths = _msra_residual_stream(model)
    raise Unsupported("efficientvit_msra.CascadedGroupAttention (input chunks fed head by head, coupling "
                      "the residual stream with every head)", paths, _hint(model, paths))
