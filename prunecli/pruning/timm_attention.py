"""Torch-Pruning extensions for timm's attention variants that its dependency graph cannot see through.

Torch-Pruning traces channels through Linear/Conv layers and element-wise ops; it cannot follow
an attention's reshapes into heads, key/value splits or per-head bias tables. Left alone it
cuts an attention's inner width apart from the width the forward reshapes with, leaves Swin's
PatchMerging LayerNorm at the old width, or (LeViT, EfficientViT) fails inside its importance
with indices beyond a layer's width. With Torch-Pruning's public mechanisms only
(`customized_pruners`, `unwrapped_parameters`, `ignored_layers`, `num_heads`):

* **Swin** (Liu et al., ICCV 2021) is pruned fully, as Isomorphic Pruning's reference does
  (github.com/VainF/Isomorphic-Pruning, `pbench/extension.py` and `prune.py`): a customized
  pruner for `PatchMerging` (its LayerNorm and reduction read the 4 merged patches'
  channels, so an input channel `i` is `i, i+C, i+2C, i+3C`), `WindowAttention.qkv` in the
  pruner's `num_heads` (whole heads or the same in-head dims in every head), the relative
  position bias table kept out of the graph and cut to the surviving heads after pruning, and
  `scale` re-derived from the new head dim (the reference sets `head_dim ** -0.5`).
* **Others**: attentions that only tie their inner width to the input's (PVT-v2, CoaT,
  CAFormer, XCiT) are pruned with the residual stream (`timm_attention_width.py`); those that
  split a fused projection per head at fixed key/value offsets (LeViT, EfficientViT-MIT,
  EfficientFormerV2, Visformer) keep their heads whole while the embedding, MLPs and convs
  around them are cut (`timm_heads.py`), and EfficientViT-MSRA's cascaded attention is refused
  there. No timm attention class is refused here any more; `_refused_types` stays the place to
  list one that Torch-Pruning would mis-read, refused before pruning with the `--ignore`
  patterns that protect it.

`attention_extension(model, ignored=())` returns `(customized_pruners, unwrapped_parameters,
ignored_layers)` for the pruner (or raises the refusal); `sync_after_pruning(model, num_heads,
removed)` fixes what Torch-Pruning leaves behind (Swin's bias tables and scale).
"""

from __future__ import annotations

import fnmatch

import torch.nn as nn
import torch_pruning as tp

from prunecli.errors import UserError


def _swin():
    from timm.models import swin_transformer

    return swin_transformer


class SwinPatchMergingPruner(tp.BasePruningFunc):
    """PatchMerging concatenates 2×2 patches channel-wise: input channel i is read at i + k·C, k < 4."""

    def prune_out_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        tp.prune_linear_out_channels(layer.reduction, idxs)
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
        dim = self.get_in_channels(layer)  # from the layer's width, not `layer.dim` (stale after a prune)
        repeated = [i + k * dim for k in range(4) for i in idxs]
        tp.prune_linear_in_channels(layer.reduction, repeated)
        tp.prune_layernorm_out_channels(layer.norm, repeated)
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.reduction.out_features

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.reduction.in_features // 4


def _refused_types() -> dict[type, str]:
    """timm attention classes whose reshapes tie inner widths to the input's, with why, for refusal."""
    return {}


def _glob(path: str) -> str:
    """`stages.1.blocks.0.attn` → `stages.*.blocks.*.attn`: one --ignore pattern for every such block."""
    return ".".join("*" if part.isdigit() else part for part in path.split("."))


def _globs(model: nn.Module, paths: list[str]) -> list[str]:
    """Fewest --ignore patterns matching exactly `paths`: `*.factoratt_crpe` when the leaf name is
    unique to them, else one `stages.*.blocks.*.attn`-style pattern per path shape."""
    names = [n for n, _ in model.named_modules()]
    leaves = {p.rsplit(".", 1)[-1] for p in paths}
    if len(leaves) == 1:
        short = f"*.{leaves.pop()}"
        if {n for n in names if fnmatch.fnmatchcase(n, short)} == set(paths):
            return [short]
    return sorted({_glob(p) for p in paths})


def _check_supported(model: nn.Module, ignored: list) -> None:
    """Refuse before pruning when an attention Torch-Pruning cannot follow has a layer not ignored."""
    refused = _refused_types()
    skip = {id(m) for layer in ignored if isinstance(layer, nn.Module) for m in layer.modules()}
    bad: dict[type, list[str]] = {}
    for path, m in model.named_modules():
        if type(m) in refused and any(
            isinstance(sub, (nn.Linear, nn.Conv2d)) and id(sub) not in skip for sub in m.modules()
        ):
            bad.setdefault(type(m), []).append(path)
    if bad:
        kind, paths = next(iter(bad.items()))
        globs = _globs(model, [p for ps in bad.values() for p in ps])
        ignore = " ".join(f"--ignore '{g}'" for g in globs)
        raise UserError(
            f"cannot prune {kind.__module__.rsplit('.', 1)[-1]}.{kind.__name__} at {paths[0]} "
            f"({refused[kind]}); prune the rest with {ignore} (MLPs and convs only)"
        )


def attention_extension(model: nn.Module, ignored: list = ()) -> tuple[dict, list, list]:
    """(customized_pruners, unwrapped_parameters, ignored_layers) for the timm attention in `model`.

    ignored_layers lists Swin's relative position bias tables (cut per head after pruning, as
    the reference) and the bias tables of attentions the user ignores; unwrapped_parameters
    declares the same tables so Torch-Pruning does not warn that it would guess their dim.

    Args:
        ignored: the layers the user already protects (`--ignore`); a refused attention whose
            every Linear/Conv is among them is fine (only the MLPs and convs around it are cut).

    Raises:
        UserError: an attention variant we cannot prune consistently and the user did not ignore.
    """
    _check_supported(model, list(ignored))
    swin = _swin()
    customized: dict = {}
    params: list = []
    if any(isinstance(m, swin.PatchMerging) for m in model.modules()):
        customized[swin.PatchMerging] = SwinPatchMergingPruner()
    refused = tuple(_refused_types())
    for m in model.modules():
        if isinstance(m, swin.WindowAttention):
            params.append(m.relative_position_bias_table)
        elif isinstance(m, refused):  # ignored by the user: keep its bias tables whole too
            params.extend(m.parameters(recurse=False))
    # Declared (dim 1 = heads) so TP does not warn it will guess a dim; ignored, so it never cuts them.
    unwrapped = [(p, p.dim() - 1) for p in params]
    return customized, unwrapped, params


def _kept_heads(table_heads: int, qkv: nn.Linear, removed: list[int]) -> list[int]:
    """Heads of a fused (3, heads, head_dim) qkv with at least one query channel left."""
    width = (qkv.out_features + len(removed)) // 3
    head_dim = width // table_heads
    gone = set(removed)
    return [h for h in range(table_heads) if any(h * head_dim + d not in gone for d in range(head_dim))]


def sync_after_pruning(model: nn.Module, num_heads: dict | None = None,
                       removed: dict[nn.Module, list[int]] | None = None) -> dict[str, dict]:
    """Cut Swin's per-head bias tables to the heads left and re-derive `scale`; returns what changed.

    Args:
        num_heads: the pruner's `num_heads` dict (heads left per `qkv`).
        removed: output-channel indices each Linear lost (unpruned numbering); a table is cut to
            the heads that still have a query channel.
    """
    swin = _swin()
    changes: dict[str, dict] = {}
    for path, m in model.named_modules():
        if not isinstance(m, swin.WindowAttention):
            continue
        table = m.relative_position_bias_table
        heads = int((num_heads or {}).get(m.qkv, table.shape[1]))
        if heads != table.shape[1]:
            cut = (removed or {}).get(m.qkv)
            if cut is None:
                raise RuntimeError(f"{path}: heads were pruned but the removed qkv channels are unknown")
            keep = _kept_heads(table.shape[1], m.qkv, cut)
            if len(keep) != heads:
                raise RuntimeError(f"{path}: {len(keep)} heads keep query channels, the pruner says {heads}")
            m.relative_position_bias_table = nn.Parameter(table.data[:, keep].clone(),
                                                          requires_grad=table.requires_grad)
            changes.setdefault(path, {})["heads_kept"] = keep
        head_dim = m.qkv.out_features // (3 * heads)
        if m.scale != head_dim**-0.5:
            m.scale = head_dim**-0.5
            changes.setdefault(path, {})["scale"] = m.scale
    return changes
