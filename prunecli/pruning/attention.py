"""Keep timm attention modules' head bookkeeping consistent after Torch-Pruning.

Torch-Pruning shrinks Linear layers, not the Python ints an attention module reshapes with.
timm's `Attention.forward` (timm >= 1.0) computes

    qkv.reshape(B, N, 3, num_heads, head_dim) ... x.reshape(B, N, attn_dim)

so after `qkv`/`proj` lose channels, `num_heads`, `head_dim`, `attn_dim` and `scale` must be
re-derived from `qkv.out_features == 3 * num_heads * head_dim`, or the forward fails (or,
worse, silently mixes heads). These are whitelisted checkpoint attributes, so a fresh build
plus the header's structure diff reproduces the pruned module exactly.

Convention (Torch-Pruning's `examples/transformers/prune_timm_vit.py`): the pruner gets
`num_heads={attn.qkv: attn.num_heads}`; `prune_head_dims=True` (the default) keeps the head
count and shortens every head, `prune_num_heads=True` removes whole heads, and
`pruner.num_heads[attn.qkv]` holds the heads left. Afterwards the example sets
`num_heads = pruner.num_heads[qkv]` and `head_dim = qkv.out_features // (3 * num_heads)`; it
also patches `forward` to reshape with -1, which timm's `attn_dim` now makes unnecessary.

`scale` becomes `head_dim ** -0.5` when `head_dim` changes: that is what timm's fused path
(`F.scaled_dot_product_attention`, whose default scale is 1/sqrt(q.size(-1))) computes
anyway, so the fused and the explicit path agree again.

Not handled (skipped, or left to fail loudly): separate q/k/v projections (timm's
`AttentionRope(qkv_fused=False)`), grouped-query attention, and per-head `q_norm`/`k_norm`
under head-dim pruning (Torch-Pruning does not shrink them; prune whole heads instead).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn as nn

SYNCED = ("num_heads", "head_dim", "attn_dim", "scale")


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) for every timm-style attention: a fused `qkv` Linear and an int `num_heads`.

    LeViT-style attentions (EfficientFormer, TinyViT) are not: their `qkv` splits per head into
    key, key and a longer value (`val_dim`), not 3 equal parts (`pruning/timm_tpidx.py` keeps
    their inner widths).
    """
    return [
        (path, m)
        for path, m in model.named_modules()
        if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
        and not isinstance(getattr(m, "val_dim", None), int)
    ]


def _heads_left(path: str, module: nn.Module, num_heads: Mapping[nn.Module, int] | None) -> int:
    """Heads after pruning: the pruner's count when given, else inferred from `qkv` width.

    Without the pruner's dict the split of `3 * heads * head_dim` is ambiguous (4×8 and 2×16
    look alike), so we assume Torch-Pruning's default, head dims pruned and heads kept, and
    fall back to whole-head pruning only when the head count no longer divides the width.
    """
    out = module.qkv.out_features
    if num_heads is not None and module.qkv in num_heads:
        return int(num_heads[module.qkv])
    if out % (3 * module.num_heads) == 0:
        return module.num_heads
    head_dim = getattr(module, "head_dim", None)
    if isinstance(head_dim, int) and head_dim > 0 and out % (3 * head_dim) == 0:
        return out // (3 * head_dim)
    raise RuntimeError(
        f"{path}: qkv has {out} outputs, which neither {module.num_heads} heads nor head_dim "
        f"{head_dim} divide into 3 equal q/k/v parts; pass the pruner's num_heads dict"
    )


def _derived(path: str, module: nn.Module, heads: int) -> dict[str, int | float]:
    out = module.qkv.out_features
    if heads <= 0 or out % (3 * heads):
        raise RuntimeError(f"{path}: qkv has {out} outputs, not 3 × {heads} heads × an integer head_dim")
    head_dim = out // (3 * heads)
    proj = getattr(module, "proj", None)
    if isinstance(proj, nn.Linear) and proj.in_features != heads * head_dim:
        raise RuntimeError(
            f"{path}: proj reads {proj.in_features} features but qkv gives {heads} × {head_dim}; "
            "Torch-Pruning should have pruned both together"
        )
    values: dict[str, int | float] = {"num_heads": heads, "head_dim": head_dim, "attn_dim": heads * head_dim}
    if getattr(module, "head_dim", head_dim) != head_dim:
        values["scale"] = head_dim**-0.5  # only on change: keeps a model's own non-default scale
    return values


def sync_attention(model: nn.Module, num_heads: Mapping[nn.Module, int] | None = None) -> dict[str, dict]:
    """Re-derive head attributes of every timm-style attention in `model` from its pruned `qkv`.

    Args:
        model: the model Torch-Pruning has just pruned (changed in place).
        num_heads: the pruner's `num_heads` dict (`pruner.num_heads`, keyed by each `qkv`
            Linear); pass it whenever heads may have been removed, since the qkv width alone
            cannot tell fewer heads from shorter ones.

    Returns:
        module path → {attribute: new value} for what changed (empty for an unpruned model).

    Raises:
        RuntimeError: a `qkv`/`proj` shape that no head split explains (a pruning bug).
    """
    changes: dict[str, dict] = {}
    for path, module in attention_modules(model):
        values = _derived(path, module, _heads_left(path, module, num_heads))
        changed = {}
        for attr, value in values.items():
            if hasattr(module, attr) and getattr(module, attr) != value:
                setattr(module, attr, value)
                changed[attr] = value
        if changed:
            changes[path] = changed
    return changes


def sync_model_widths(model: nn.Module) -> dict[str, int]:
    """Re-derive a timm model's own width attributes after its embedding width was pruned.

    timm keeps `num_features` / `head_hidden_size` (the classifier's input width, used by
    `reset_classifier`) and, for ViTs, `embed_dim` as plain ints; Torch-Pruning shrinks the
    layers but not these, so `info` and a later `reset_classifier` would see stale sizes.
    """
    changed: dict[str, int] = {}
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(classifier, nn.Linear):
        for attr in ("num_features", "head_hidden_size"):
            if isinstance(getattr(model, attr, None), int) and getattr(model, attr) != classifier.in_features:
                setattr(model, attr, classifier.in_features)
                changed[attr] = classifier.in_features
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if isinstance(proj, nn.Conv2d) and isinstance(getattr(model, "embed_dim", None), int):
        if model.embed_dim != proj.out_channels:
            model.embed_dim = changed["embed_dim"] = proj.out_channels
    return changed
