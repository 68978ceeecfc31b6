"""Block removal: replace the least important residual blocks by identities (depth pruning).

Isomorphic Pruning's ConvNeXt-T-4.2G (Fang et al., ECCV 2024; spec §3.2 of
`shared/research/seeds-similarity-mtp-isomorphic.md`) prunes widths and then drops the 18
lowest-scoring blocks of timm's `stages[-2]`, where a block's score is the mean over its
parameters of mean |p · ∂L/∂p| (the calibration gradients, which Torch-Pruning slices along
with the weights). A block may go only if its output has its input's shape, so removing it
leaves the residual stream intact; the checkpoint records the removed paths
(`removed_modules`) and loading re-applies them by putting `nn.Identity` in their place.
"""

from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from prunecli.errors import CheckpointError, UserError
from prunecli.profiling.counts import example_input, hooked_forward


def candidates(model: nn.Module, pattern: str) -> list[str]:
    """Modules matching the glob at the pattern's depth (`stages.2.blocks.*` → the blocks, not their parts)."""
    depth = pattern.count(".")
    hits = [n for n, m in model.named_modules()
            if n and n.count(".") == depth and fnmatch.fnmatchcase(n, pattern) and not isinstance(m, nn.Identity)]
    if not hits:
        raise UserError(f"--blocks {pattern!r} matches no module; `prunecli profile CKPT --per-layer` lists them")
    return hits


def shape_preserving(model: nn.Module, names: list[str], input_shape) -> list[str]:
    """The named blocks whose output has the same shape as their input (safe to bypass)."""
    named = dict(model.named_modules())
    same: dict[str, bool] = {}

    def hook(name):
        def check(module, inputs, output) -> None:
            same[name] = (len(inputs) == 1 and isinstance(output, torch.Tensor)
                          and inputs[0].shape == output.shape)
        return check

    handles = [named[n].register_forward_hook(hook(n)) for n in names]
    hooked_forward(model, example_input(input_shape), handles)
    return [n for n in names if same.get(n)]


def block_score(block: nn.Module) -> float:
    """Mean over the block's parameters of mean |p · grad| (Taylor, as the paper's script)."""
    with torch.no_grad():
        terms = [(p * p.grad).abs().mean() for p in block.parameters() if p.grad is not None]
        if not terms:
            raise UserError("block removal ranks blocks by Taylor scores: give --data SPEC for calibration gradients")
        return float(torch.stack(terms).mean())


def remove_blocks(model: nn.Module, pattern: str, count: int, input_shape) -> list[dict]:
    """Replace the `count` lowest-scoring shape-preserving blocks matching `pattern` by identities."""
    names = shape_preserving(model, candidates(model, pattern), input_shape)
    if count > len(names):
        raise UserError(f"--remove-blocks {count}: only {len(names)} blocks matching {pattern!r} "
                        "keep their input's shape and can be removed")
    named = dict(model.named_modules())
    scores = sorted((block_score(named[n]), n) for n in names)
    gone = [{"name": n, "score": s} for s, n in scores[:count]]
    replace_with_identity(model, [g["name"] for g in gone])
    return gone


def replace_with_identity(model: nn.Module, paths: list[str]) -> None:
    """Put `nn.Identity` at each path. Only an existing child module can be replaced, so a
    checkpoint cannot add modules or set other attributes this way."""
    for path in paths:
        parent_path, _, child = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path) if parent_path else model
        except AttributeError:
            parent = None
        if parent is None or child not in parent._modules or parent._modules[child] is None:
            raise CheckpointError(f"checkpoint removes module {path!r}, which the model does not have")
        parent._modules[child] = nn.Identity()
