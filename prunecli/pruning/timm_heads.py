"""timm attentions whose per-head reshapes Torch-Pruning cannot group in bounded time (issue 12).

Torch-Pruning 1.6 reads a `reshape` of a 4-D (NCHW) tensor whose consumer has another width
as a flatten: every channel index becomes `H·W` indices (`_FlattenIndexMapping`). Attention
blocks that keep NCHW tensors and reshape them into heads therefore blow each group rooted
inside them up to hundreds of thousands of index objects, and `Group.has_pruning_op` scans
the whole group for each one; the indices describe channels that do not exist.

* **EfficientFormerV2** (Li et al., ICCV 2023): `Attention2d` / `Attention2dDownsample`
  reshape q/k/v convs to `(B, heads, -1, N)`, mix heads with talking-head convs and add
  per-head `attention_biases`. Unhelped, the prune ended in a traceback after ~376 s (the one
  traceback of the sweep).
* **Visformer** (Chen et al., ICCV 2021): `Attention` reshapes a 1×1-conv qkv to
  `(B, 3, heads, head_dim, H·W)`; the group of one qkv conv did not finish in 40 s (the
  prune: over 380 s). Its NCHW position embeddings `pos_embed1..3` are declared as unwrapped
  parameters cut along dim 1 (Torch-Pruning would cut their last dimension, the width).

* **EfficientViT-MIT** (Cai et al., ICCV 2023): `LiteMLA` reshapes qkv and its multi-scale
  aggregations (depth-wise and per-head grouped convs) to `(B, -1, 3·head_dim, H·W)`; Torch-
  Pruning failed inside its importance with indices beyond a layer's width (was refused).
* **LeViT** (Graham et al., ICCV 2021): `Attention` / `AttentionDownsample` split a fused
  (kv) projection per head into key/key/value dims with per-head `attention_biases` (was
  refused); its query subsampling slices a (B, H, W, C) view along H and W, which Torch-Pruning
  reads as a channel slice, so the query's input columns came out wrong (`49x89 and 128x128`):
  while pruning, that `Downsample` is given an `index_select` forward, identical bit for bit.

  These four now prune: the convs that write only the attention's inside (q/k/v, v_local, talking
  heads) are ignored as group roots, so no group walks into the reshapes, while their input
  columns and `proj`'s output rows follow the residual stream (a conv's in-channel cut does
  not propagate further). The embedding width, the MLPs and convs are pruned; the attention's
  heads and in-head widths are kept whole (documented choice: cutting them needs a head-aware
  pruner over the reshape, not written yet), and so are the bias tables.
* **EfficientViT-MSRA** (Liu et al., CVPR 2023), refused: `CascadedGroupAttention` feeds the
  input head by head (`x.chunk(heads, dim=1)`) and adds head i's output to chunk i+1 before
  head i+1's qkv, so the residual stream's channels are coupled, chunk by chunk, with the
  inside of every head; every residual group walks into all heads (one FFN conv's group did
  not finish in 40 s; the prune: over 380 s), and pruning a chunk's channel would need the
  same channel cut from the previous head's value dim, giving heads unequal widths the forward
  cannot reshape. Ignoring the attention alone does not help; leaving the residual stream
  unpruned does (its writers: the patch embedding's last conv, each block's depth-wise convs,
  FFN output convs and attention, the downsampling blocks), so we refuse before the pruner is
  built with exactly those `--ignore` globs, verified on efficientvit_m0 (the FFN hidden widths
  are what is left to prune).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from prunecli.pruning.extensions import Unsupported, register_extension


def _paths(model: nn.Module, types: tuple[type, ...]) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, types)]


def _hint(model: nn.Module, paths: list[str]) -> str:
    from prunecli.pruning.timm_attention import _globs

    return " ".join(f"--ignore '{g}'" for g in _globs(model, paths))


def _inner(attn: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    """The convs of `attn` (dotted names) whose outputs live only inside the attention."""
    return [attn.get_submodule(n) for n in names]


@register_extension
def efficientformerv2_attention(model: nn.Module):
    """EfficientFormerV2's 2-D attention: embedding width pruned around it, its heads kept whole.

    The convs that make q, k, v (and v_local, the talking heads) are ignored as group roots, so
    no group walks into the per-head reshapes; q/k/v's input columns and `proj`'s output rows
    still follow the residual stream they read and write. `attention_biases` (heads, N) stay
    whole.
    """
    from timm.models.efficientformer_v2 import Attention2d, Attention2dDownsample

    ignored: list = []
    params: list = []
    for m in model.modules():
        if isinstance(m, Attention2d):
            ignored += _inner(m, ("q.conv", "k.conv", "v.conv", "v_local.conv", "talking_head1", "talking_head2"))
        elif isinstance(m, Attention2dDownsample):
            ignored += _inner(m, ("q.proj.conv", "k.conv", "v.conv", "v_local.conv"))
        else:
            continue
        params.append(m.attention_biases)
    return {}, [(p, p.dim() - 1) for p in params], ignored + params


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
    """Visformer's conv attention: embedding width pruned around it, its heads kept whole.

    Its `qkv` conv is ignored as a group root, so no group walks into the per-head reshape;
    `qkv`'s input columns and `proj`'s output rows still follow the residual stream.
    """
    from timm.models.visformer import Attention

    return {}, [], [m.qkv for m in model.modules() if isinstance(m, Attention)]


@register_extension
def efficientvit_mit_attention(model: nn.Module):
    """EfficientViT-MIT's `LiteMLA`: embedding width pruned around it, its heads kept whole.

    Its `qkv` conv and the depth-wise / grouped aggregation convs over qkv (per-head groups) are
    ignored as group roots; `qkv`'s input columns and `proj`'s output rows follow the stream.
    """
    from timm.models.efficientvit_mit import LiteMLA

    ignored: list = []
    for m in model.modules():
        if isinstance(m, LiteMLA):
            ignored.append(m.qkv.conv)
            ignored += [c for c in m.aggreg.modules() if isinstance(c, nn.Conv2d)]
    return {}, [], ignored


_TRACEABLE: dict[type, type] = {}


def _traceable_downsample() -> type:
    """LeViT's `Downsample` taking every stride-th token with `index_select` instead of a slice.

    Its forward views (B, N, C) tokens as (B, H, W, C) and slices `[:, ::s, ::s]`; Torch-Pruning
    reads a slice along dim 1 of a 4-D tensor as a channel slice and maps the residual stream's
    channels to the wrong (fewer) query input columns. `index_select` gives the same values
    bit for bit and is an op Torch-Pruning passes channels through unchanged. The subclass only
    lives in the model being pruned; a checkpoint reloads into timm's own class.
    """
    from timm.models.levit import Downsample

    if Downsample not in _TRACEABLE:
        def forward(self, x):
            if self.pool is not None:
                return Downsample.forward(self, x)
            b, _, c = x.shape
            x = x.view(b, self.resolution[0], self.resolution[1], c)
            for dim, n in ((1, self.resolution[0]), (2, self.resolution[1])):
                x = x.index_select(dim, torch.arange(0, n, self.stride, device=x.device))
            return x.reshape(b, -1, c)

        _TRACEABLE[Downsample] = type("TraceableDownsample", (Downsample,), {"forward": forward,
                                                                              "__doc__": "LeViT Downsample"})
    return _TRACEABLE[Downsample]


@register_extension
def levit_attention(model: nn.Module):
    """LeViT's attention and attention-downsampling: embedding width pruned around them, heads whole.

    `qkv` (blocks) and `kv` / the query's linear (downsampling) are ignored as group roots, so
    no group walks into the per-head key/key/value split; their input columns and `proj`'s
    output rows follow the residual stream. The per-head `attention_biases` stay whole, and the
    query's token subsampling is made readable to Torch-Pruning (`_traceable_downsample`).
    """
    from timm.models.levit import Attention, AttentionDownsample, Downsample

    ignored: list = []
    params: list = []
    for m in model.modules():
        if type(m) is Downsample:
            m.__class__ = _traceable_downsample()
        if isinstance(m, Attention):
            ignored.append(m.qkv.linear)
        elif isinstance(m, AttentionDownsample):
            ignored += [m.kv.linear, m.q.ln.linear]
        else:
            continue
        params.append(m.attention_biases)
    return {}, [(p, p.dim() - 1) for p in params], ignored + params


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
