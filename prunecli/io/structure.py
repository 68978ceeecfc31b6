"""The structure a checkpoint records: which sizes pruning changed, and how loading re-applies them.

`structure_diff` / `removed_modules` compare a pruned model with a fresh registry build when a
checkpoint is written; `apply_structure` re-applies the recorded sizes to a fresh build when it is
read. Only the attributes of `WHITELIST`, with their value types, can be set from a file, and only
where they are plain attributes of the module instance: no code and no arbitrary attribute comes
from a checkpoint (prunecli/io/checkpoint.py).
"""

from __future__ import annotations

from typing import Any

from prunecli.errors import CheckpointError

# Attributes a checkpoint may change on a module, with their allowed value types. These are
# the sizes pruning changes (channels, features, heads); nothing else can be set from a file.
WHITELIST: dict[str, type] = {
    "in_channels": int,
    "out_channels": int,
    "groups": int,
    "in_features": int,
    "out_features": int,
    "num_features": int,
    "num_channels": int,
    "num_groups": int,
    "normalized_shape": tuple,
    "num_heads": int,
    "head_dim": int,
    "attn_dim": int,
    "scale": float,
    "embed_dim": int,
    "head_hidden_size": int,
    "shape": tuple,  # timm metaformer.Scale's view shape (channels, 1, 1)
    "splits": tuple,  # timm MixedConv2d's input split sizes (one per kernel size)
    "width": int,  # timm Res2Net Bottle2neck's chunk width
    "dim": int,  # timm pvt_v2.Attention's width (tied to its input; pruning/timm_attention_width.py)
    "attention_dim": int,  # timm metaformer.Attention's heads × head_dim
    "channel_splits": tuple,  # timm coat.ConvRelPosEnc: channels of each depthwise-conv head group
    # EfficientFormer / TinyViT attention: per-head value dims and the widths derived from them
    "val_dim": int,
    "val_attn_dim": int,
    "out_dim": int,
    "key_attn_dim": int,
    "hidden_dim": int,  # torchvision VisionTransformer's embedding width (pruning/tv_blocks.py)
    "kdim": int,  # nn.MultiheadAttention's key/value widths (= embed_dim; set by Torch-Pruning)
    "vdim": int,
}


def apply_structure(model, structure: dict[str, dict[str, Any]], tensors: dict) -> None:
    """Set whitelisted attributes, then re-shape parameters and buffers to the stored shapes."""
    import torch

    for path, attrs in structure.items():
        module = _submodule(model, path)
        for attr, value in attrs.items():
            where = f"{path}.{attr}" if path else f"the model's {attr}"
            kind = WHITELIST.get(attr)
            if kind is None or not _settable(module, attr):
                why = " (a property of " + type(module).__name__ + ")" if _is_property(module, attr) else ""
                raise CheckpointError(f"checkpoint asks to set {where}{why}, which is not allowed")
            if kind is tuple:
                if not (isinstance(value, list) and all(type(v) is int for v in value)):
                    raise CheckpointError(f"{where} must be a list of integers")
                value = tuple(value)
            elif kind is float and type(value) in (int, float):
                value = float(value)
            elif type(value) is not kind:
                raise CheckpointError(f"{where} must be {kind.__name__}, got {type(value).__name__}")
            setattr(module, attr, value)
    for key, tensor in tensors.items():
        owner_path, _, name = key.rpartition(".")
        try:
            owner = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            continue  # strict loading reports unexpected keys
        if name in owner._parameters and owner._parameters[name] is not None:
            param = owner._parameters[name]
            if param.shape != tensor.shape:
                param.data = torch.empty(tensor.shape, dtype=param.dtype, device=param.device)
        elif name in owner._buffers and owner._buffers[name] is not None:
            buf = owner._buffers[name]
            if buf.shape != tensor.shape:
                owner._buffers[name] = torch.empty(tensor.shape, dtype=buf.dtype, device=buf.device)


def _settable(module, attr: str) -> bool:
    """A size a checkpoint may set: a plain attribute of this module instance.

    Wrappers such as timm's `ConvNormAct` or `BatchNormAct2d` expose `out_channels`,
    `num_features`, ... as properties that read the inner conv/bn (or a class default); the
    inner module carries the real attribute and its own entry, so a property is never set.
    """
    return attr in vars(module) and not _is_property(module, attr)


def _is_property(module, attr: str) -> bool:
    import inspect

    return isinstance(inspect.getattr_static(type(module), attr, None), property)


def _submodule(model, path: str):
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        raise CheckpointError(f"checkpoint names module {path!r}, which the model does not have") from None


def structure_diff(model, reference) -> dict[str, dict[str, Any]]:
    """Whitelisted attributes of `model` that differ from an unpruned `reference` build."""
    ref = dict(reference.named_modules())
    diff: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        base = ref.get(path)
        if base is None:
            continue
        for attr, kind in WHITELIST.items():
            if not _settable(module, attr):
                continue
            value = getattr(module, attr)
            if not isinstance(value, {float: (int, float), tuple: (tuple, list)}.get(kind, kind)):
                continue  # e.g. timm metaformer.Scale's `scale` is a Parameter, not the attention float
            if value != getattr(base, attr, None):
                diff.setdefault(path, {})[attr] = list(value) if isinstance(value, tuple) else value
    return diff


def removed_modules(model, reference) -> list[str]:
    """Paths where `model` has an identity in place of a module of the unpruned `reference`."""
    import torch.nn as nn

    ref = dict(reference.named_modules())
    return [path for path, module in model.named_modules()
            if isinstance(module, nn.Identity) and path in ref and not isinstance(ref[path], nn.Identity)]
