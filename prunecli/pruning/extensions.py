"""Architecture extensions for Torch-Pruning: custom pruners, unwrapped parameters, layers to leave alone.

Torch-Pruning's dependency graph handles Conv/Linear/norm layers; other building blocks need
its public hooks: `customized_pruners` (a `tp.pruner.function.BasePruningFunc` per layer
type), `unwrapped_parameters` (bare `nn.Parameter`s with the dimension to cut) and
`ignored_layers`. Each architecture family contributes them through one function registered
here, so `structured.prune_at` has a single hook and Torch-Pruning itself is never patched.

An extension is `fn(model) -> (customized_pruners: dict, unwrapped_parameters: list,
ignored_layers: list)`, or that tuple plus a fourth item, `num_heads: dict` (a projection →
its head count, merged into the pruner's `num_heads` so Torch-Pruning cuts whole heads or the
same in-head dims of every head), and optionally a fifth, `channel_groups: dict` (a layer → a
count g: every group holding its channels is cut at the same positions in each of g equal
blocks, Torch-Pruning's `out_channel_groups`; unlike `num_heads` it adds no attention handling).
What Torch-Pruning leaves stale after cutting (a head count, a scale, a reshape size) is fixed
by a hook registered with `register_after_prune`:
`hook(model, num_heads, removed)` runs once after the last group is cut (`num_heads`: the
pruner's head counts left; `removed`: layer → output-channel indices it lost). A hook registered
with `register_graph_fix`, `fix(model, graph, group)`, runs on the pruner's dependency graph right
after it is built (`group` None) and again after each group is cut (`group`: the group just cut,
its `(dep, idxs)` pairs), before the next group is formed (Torch-Pruning forms each group
lazily, just before it is cut): e.g. to order a split's consumers as the split's pieces and give
the split its pieces' current sizes, which Torch-Pruning's index mapping assumes and its tracing
and pruning do not keep, or to cut a layer's extra per-channel tensor with the channels. Where a layer type still cannot be pruned safely, `fn` raises
`Unsupported(layer_type, paths, hint)`; `collect` turns that into one `UserError` line before
anything is pruned, unless the user's `--ignore` already covers every offending module (then
the extension is skipped: its layers stay as they are). A refusal with `hint=None` cannot be
lifted by `--ignore` (e.g. the dependency graph itself cannot be built).

Modules listed in `PROVIDERS` register their extensions when imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

import torch.nn as nn

from prunecli.errors import UserError

Extension = Callable[[nn.Module], tuple[dict, list, list]]

PROVIDERS: tuple[str, ...] = ("prunecli.pruning.timm_blocks", "prunecli.pruning.timm_concat",
                               "prunecli.pruning.timm_cnn", "prunecli.pruning.timm_attention_width",
                               "prunecli.pruning.timm_tpidx", "prunecli.pruning.timm_heads",
                               "prunecli.pruning.tv_blocks")
"""Modules that call `register_extension` at import (append new ones at the end)."""

_EXTENSIONS: list[Extension] = []
_AFTER: list[Callable] = []
_GRAPH_FIXES: list[Callable] = []


class Unsupported(Exception):
    """A layer type this model uses that pruning cannot handle (yet)."""

    def __init__(self, layer_type: str, paths: Iterable[str], hint: str | None):
        self.layer_type, self.paths, self.hint = layer_type, sorted(paths), hint
        super().__init__(self.message())

    def message(self) -> str:
        where = ", ".join(self.paths[:3]) + (f" (+{len(self.paths) - 3} more)" if len(self.paths) > 3 else "")
        what = f"cannot prune {self.layer_type} safely (at {where})"
        if self.hint is None:
            return f"{what}; this architecture is not supported by structured pruning"
        return f"{what}; leave it unpruned with {self.hint}"


def register_extension(fn: Extension) -> Extension:
    """Add `fn` to the extensions every structured prune consults (usable as a decorator)."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def register_after_prune(fn: Callable) -> Callable:
    """Add `fn(model, num_heads, removed)` to the hooks run after every structured prune (decorator)."""
    if fn not in _AFTER:
        _AFTER.append(fn)
    return fn


def register_graph_fix(fn: Callable) -> Callable:
    """Add `fn(model, graph, group)` to the hooks run on the dependency graph after its build and each cut."""
    if fn not in _GRAPH_FIXES:
        _GRAPH_FIXES.append(fn)
    return fn


def fix_graph(model: nn.Module, graph, group=None) -> None:
    """Run every registered graph fix on Torch-Pruning's dependency graph (built, or `group` just cut)."""
    extensions()
    for fn in list(_GRAPH_FIXES):
        fn(model, graph, group)


def after_prune(model: nn.Module, num_heads: dict | None, removed: dict) -> None:
    """Run every registered after-prune hook (see the module docstring)."""
    extensions()
    for fn in list(_AFTER):
        fn(model, num_heads or {}, removed)


def extensions() -> list[Extension]:
    for name in PROVIDERS:
        importlib.import_module(name)
    return list(_EXTENSIONS)


def _covered(model: nn.Module, paths: list[str], ignored: list[nn.Module]) -> bool:
    """Every offending module is ignored, itself or through an ignored ancestor."""
    ignored_ids = {id(m) for m in ignored}
    named = dict(model.named_modules())
    for path in paths:
        parts = path.split(".")
        chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if not any(p in named and id(named[p]) in ignored_ids for p in chain):
            return False
    return True


def collect(model: nn.Module, ignored: list[nn.Module]) -> tuple[dict, list, list, dict, dict]:
    """Merge every extension's contribution for `model`.

    Args:
        model: the model about to be pruned.
        ignored: modules the user or the entry already protects (head, `--ignore`).

    Returns:
        (customized_pruners, unwrapped_parameters, ignored_layers, num_heads, channel_groups).

    Raises:
        UserError: an extension refused a layer the user did not ignore.
    """
    heads: dict = {}
    groups: dict = {}
    customized: dict = {}
    unwrapped: list = []
    extra: list = []
    for fn in extensions():
        try:
            more_custom, more_unwrapped, more_ignored, *more = fn(model)
        except Unsupported as refusal:
            if refusal.hint is not None and _covered(model, refusal.paths, ignored):
                continue
            raise UserError(refusal.message()) from None
        customized.update(more_custom)
        unwrapped.extend(more_unwrapped)
        extra.extend(more_ignored)
        heads.update(more[0] if more else {})
        groups.update(more[1] if len(more) > 1 else {})
    return customized, unwrapped, extra + _leaves_holding(model, customized, ignored), heads, groups


def _leaves_holding(model: nn.Module, customized: dict, ignored: list[nn.Module]) -> list[nn.Module]:
    """Custom-pruned modules with an ignored layer inside: Torch-Pruning never looks inside such a
    leaf (its pruner cuts the children), so protecting a child means protecting the leaf."""
    inside = {id(m) for m in ignored}
    return [m for m in model.modules()
            if (type(m) in customized or m in customized)
            and any(id(sub) in inside for sub in m.modules() if sub is not m)]
