"""Torch-Pruning extensions for torchvision's Vision Transformer (Dosovitskiy et al., ICLR 2021).

torchvision's `VisionTransformer` uses `nn.MultiheadAttention`, whose fused `in_proj` maps the
residual width E to q, k and v of the same width E. Torch-Pruning's own pruner for it cuts
`in_proj` rows (in q, k and v) and columns and `out_proj` at the same residual indices. Given
`num_heads` channel groups, those indices are the same in-head positions of every head, so each
head keeps its own channels; without them, arbitrary indices (16 of 64 measured: 4, 2, 6 and 4 per
head) re-split the survivors into other heads. Torch-Pruning then updates `embed_dim`,
`head_dim`, `kdim`, `vdim`.

What it leaves stale is the model's `hidden_dim`, which `_process_input` reshapes the patch
embedding with (`x.reshape(n, self.hidden_dim, n_h * n_w)`): an after-prune hook sets it to the
patch embedding's new width, and it is a whitelisted checkpoint attribute so a reload rebuilds it.
Torch-Pruning's torchvision benchmark (github.com/VainF/Torch-Pruning, benchmarks) does the same.
"""

from __future__ import annotations

import torch.nn as nn

from prunecli.pruning.extensions import register_after_prune, register_extension


@register_extension
def multihead_attention(model: nn.Module):
    """Every `nn.MultiheadAttention` gets `num_heads` channel groups (Torch-Pruning's
    `out_channel_groups`): the residual indices it is cut at are the same positions in every
    head. (Its `num_heads` dict would instead leave the residual group unpruned.)"""
    groups = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return {}, [], [], {}, groups


@register_after_prune
def vit_hidden_dim(model: nn.Module, num_heads: dict, removed: dict) -> None:
    """torchvision ViT: `hidden_dim` follows the patch embedding's width."""
    from torchvision.models.vision_transformer import VisionTransformer

    for m in model.modules():
        if isinstance(m, VisionTransformer) and m.hidden_dim != m.conv_proj.out_channels:
            m.hidden_dim = m.conv_proj.out_channels
