"""Structured (channel) pruning through Torch-Pruning's dependency graph.

This module is prunecli's one door into Torch-Pruning's pruner: the dependency graph keeps
residual adds, concatenations and attention projections consistent, and layers really become
smaller (so latency drops, unlike masks). We add what TP leaves to the user: protecting the
head by name, a MAC-budget search, seeded and recorded decisions (kept/removed channel
indices and importance per layer, for the `.masks.json` sidecar), and attention attributes
kept in sync after pruning.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import re
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch_pruning as tp

from prunecli.errors import UserError
from prunecli.profiling.counts import ModelCount, count, example_input
from prunecli.pruning.deadline import phase
from prunecli.pruning.graphcheck import refuse_sliced_concats


@dataclass
class PrunePlan:
    """How much to cut and where (the pruner's half of TP's split; the method gives importance)."""

    ratio: float | None = None
    target_macs: str | None = None
    global_pruning: bool = False
    ignore: list[str] = field(default_factory=list)
    round_to: int | None = None
    max_ratio: float = 0.9
    seed: int = 0
    isomorphic: bool = False
    """Rank channels only against groups of the same structure (Fang et al., ECCV 2024)."""
    head_ratio: float = 0.0
    """Fraction of attention heads to remove, ranked across all attention layers."""
    head_dim_ratio: float | None = None
    """Ratio for the attention head dimensions (their own scope); None: the common ratio."""
    remove_blocks: int = 0
    """After width pruning, replace this many lowest-scoring blocks matching `blocks` by identities."""
    blocks: str | None = None
    # latency-aware pruning (issue 16; pruning/latency.py)
    target_latency: str | None = None
    """`0.5x` of the measured latency, or `12ms`, at `latency_batch` on `device`."""
    latency_batch: int = 64
    round_auto: bool = False
    """Per group, the width the device runs fastest within ±`round_window` of the ranked choice."""
    round_window: int = 8
    halp: bool = False
    """HALP's latency-saliency knapsack decides every group's width (methods/halp.py)."""
    device: str = "cpu"
    table_source: str | None = None
    """The checkpoint beside which the latency table is cached (`<stem>.latency.json`)."""

    @property
    def latency_aware(self) -> bool:
        return self.halp or self.round_auto or self.target_latency is not None


@dataclass
class Outcome:
    ratio: float
    before: ModelCount
    after: ModelCount
    layers: list[dict]
    protected: list[str]
    blocks: list[dict] = field(default_factory=list)
    output_diff: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    """Latency-aware pruning: measured before/after, the target, the table (`.flops.json`'s `latency.prune`)."""


def parse_target_macs(text: str, base_macs: int) -> int:
    """`2.5G`, `300M`, `41e6` → MACs; `0.5x` → half of the model's MACs."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgGtTxX]?)\s*", text)
    if not m:
        raise UserError(f"--target-macs {text!r}: expected a number with K/M/G suffix (2.5G) or a factor (0.5x)")
    value, unit = float(m.group(1)), m.group(2).lower()
    target = value * base_macs if unit == "x" else value * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[unit]
    if target >= base_macs:
        raise UserError(f"--target-macs {text} ({target:.4g}) is not below the model's {base_macs:.4g} MACs")
    if target <= 0:
        raise UserError(f"--target-macs {text} must be positive")
    return int(target)


def protected_modules(model: nn.Module, protected: tuple[str, ...], patterns: list[str]) -> list[nn.Module]:
    """Modules whose output channels are kept: the entry's head plus `--ignore` glob patterns."""
    named = dict(model.named_modules())
    out = [m for n, m in named.items() if n and any(n == p or fnmatch.fnmatchcase(n, p) for p in protected)]
    for pat in patterns:
        hits = [m for n, m in named.items() if n and fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise UserError(f"--ignore {pat!r} matches no layer; `prunecli profile CKPT --per-layer` lists them")
        out.extend(hits)
    return out


class _Recorder(tp.importance.Importance):
    """Wraps an importance so each group's scores can be written to the masks sidecar."""

    def __init__(self, inner, model: nn.Module | None = None):
        self.inner, self.scores, self.current, self.model = inner, {}, None, model
        self.zero_groups = 0

    def __call__(self, group, **kwargs):
        self.current = group[0].dep.target.module  # named if Torch-Pruning fails on this group
        imp = self.inner(group, **kwargs)
        if imp is not None:
            if torch.isnan(imp).all():  # Taylor's mean normaliser on an all-zero group: 0/0
                imp = torch.zeros_like(imp)
                self.zero_groups += 1
            elif not torch.isfinite(imp).all():
                raise self._not_finite()
            self.scores[group[0].dep.target.module] = imp.detach().float().cpu()
        return imp

    def _not_finite(self) -> UserError:
        """Scores of NaN rank channels arbitrarily (or, globally, none): refuse instead. A group
        whose Taylor scores are all NaN is not this case: Torch-Pruning divides by their mean, so
        a group no gradient reached (a residual branch whose last BN starts at zero, as timm
        initialises ResNets and TinyViT) comes out 0/0; its importance is zero, said once."""
        names = {m: n for n, m in self.model.named_modules()} if self.model is not None else {}
        where = f" of the channel group rooted at '{names[self.current]}'" if self.current in names else ""
        return UserError(f"the importance scores{where} are not finite (NaN or inf: diverged weights or "
                         "gradients?); use a magnitude importance (--method l1, --importance l1); nothing written")


def _attention_heads(model: nn.Module) -> dict:
    """qkv projection → head count, so Torch-Pruning keeps whole heads consistent."""
    from prunecli.pruning.attention import attention_modules

    return {m.qkv: m.num_heads for _, m in attention_modules(model)}


@dataclass
class Extended:
    """What Torch-Pruning is given for a model: the layers left alone (the entry's head, `--ignore`,
    what extensions keep) and every extension's pruners, bare parameters, heads and channel groups."""

    ignored: list
    hidden: list
    """Bare parameters kept out of the graph (bias tables cut per head after pruning, or whole)."""
    custom: dict
    unwrapped: list
    heads: dict
    groups: dict


def extended(model: nn.Module, protected: tuple[str, ...], ignore: list[str]) -> Extended:
    """The registry's extensions for `model` (`extensions.collect`, the timm attention variants).

    Raises:
        UserError: an extension refuses a layer the user did not ignore.
    """
    from prunecli.pruning.extensions import collect
    from prunecli.pruning.timm_attention import attention_extension

    ignored = protected_modules(model, protected, ignore)
    customized, unwrapped, extra_ignored, extension_heads, groups = collect(model, ignored)
    ignored = ignored + extra_ignored
    # Attention variants: their refusal needs the user's --ignore modules, so it is called here.
    att_custom, att_unwrapped, hidden = attention_extension(model, ignored)
    return Extended(ignored, hidden, {**customized, **att_custom}, [*unwrapped, *att_unwrapped],
                    {**_attention_heads(model), **extension_heads}, groups)


def make_pruner(model, input_shape, importance, ratio: float, plan: PrunePlan, protected: tuple[str, ...],
                widths: dict[str, int] | None = None):
    """Torch-Pruning's pruner for `model` with the registry's extensions, its graph fixed.

    `widths` (root layer name → channels kept) sets each listed group's width exactly (a local
    scope per group, Torch-Pruning's `pruning_ratio_dict`); latency-aware pruning decides them.
    """
    from prunecli.pruning.extensions import fix_graph

    ext = extended(model, protected, plan.ignore)
    heads = ext.heads
    ratio_dict = {tuple(heads): plan.head_dim_ratio} if heads and plan.head_dim_ratio is not None else {}
    if widths is not None:  # int(C·(1 − r)) = w exactly: r = 1 − (w + ½)/C
        named = dict(model.named_modules())
        ratio_dict.update({named[n]: 1 - (w + 0.5) / _out_channels(named[n]) for n, w in widths.items()})
    with phase("building the dependency graph"), warnings.catch_warnings(record=True) as caught, \
            graph_errors(_PRUNER_HINT):
        warnings.simplefilter("always")
        pruner = tp.pruner.BasePruner(
            model, example_input(input_shape), importance=importance,
            global_pruning=(plan.global_pruning or plan.isomorphic) and widths is None,
            isomorphic=plan.isomorphic and widths is None,
            pruning_ratio=ratio, max_pruning_ratio=plan.max_ratio if widths is None else 1.0,
            ignored_layers=ext.ignored + ext.hidden,
            round_to=plan.round_to if widths is None else None, num_heads=heads, out_channel_groups=ext.groups,
            customized_pruners=ext.custom or None, unwrapped_parameters=ext.unwrapped or None,
            pruning_ratio_dict=ratio_dict or None,
            prune_num_heads=plan.head_ratio > 0, head_pruning_ratio=plan.head_ratio,
        )
    _report(caught)
    fix_graph(model, pruner.DG)  # before any group is formed
    return pruner


def prune_at(model, input_shape, importance, ratio: float, plan: PrunePlan, protected: tuple[str, ...],
             widths: dict[str, int] | None = None) -> list[dict]:
    """Prune `model` in place at channel ratio `ratio` (or at `widths`, see `make_pruner`);
    returns one record per pruned layer."""
    from prunecli.pruning.extensions import after_prune, fix_graph

    recorder = _Recorder(importance, model)
    pruner = make_pruner(model, input_shape, recorder, ratio, plan, protected, widths)
    names = {m: n for n, m in model.named_modules()}
    before = {m: _out_channels(m) for m in names}
    removed: dict[nn.Module, list[int]] = {}
    scores: dict[nn.Module, torch.Tensor] = {}
    with phase("pruning"), warnings.catch_warnings(record=True) as caught:  # TP also warns while stepping
        warnings.simplefilter("always")
        try:
            for group in pruner.step(interactive=True):
                root = recorder.current = group[0].dep.target.module
                for mod, idxs in _cut_layers(group, pruner.DG, before):
                    removed.setdefault(mod, []).extend(idxs)
                    if root in recorder.scores:
                        scores[mod] = recorder.scores[root]
                group.prune()
                fix_graph(model, pruner.DG, group)  # the next group is formed from the graph as it is now
        except UserError:
            raise
        except Exception as error:  # inside Torch-Pruning: one line naming the group, never a traceback
            raise _group_failed(recorder.current, names, error) from error
    _report(caught)
    if recorder.zero_groups and recorder.zero_groups >= len(recorder.scores):
        raise UserError("no gradient reached any prunable layer (every gradient importance is zero: e.g. a classifier "
                        "initialised at zero, as timm's MLP-Mixer at random init); calibrate a trained model, or use "
                        "a magnitude importance (--method l1, --importance l1); nothing written")
    if recorder.zero_groups:
        from prunecli.console import warn

        warn(f"{recorder.zero_groups} channel group(s) got no gradient (importance 0: e.g. a residual branch "
             "whose last BatchNorm starts at zero, as at random init); they rank lowest")
    from prunecli.pruning.timm_attention import sync_after_pruning

    sync_after_pruning(model, pruner.num_heads, removed)
    after_prune(model, pruner.num_heads, removed)
    _sync_attention(model, pruner.num_heads)
    return [_record(names[m], m, before[m], sorted(set(idx)), scores.get(m)) for m, idx in removed.items()]


def _group_failed(root: nn.Module | None, names: dict, error: Exception) -> UserError:
    """Torch-Pruning raised while scoring or cutting a group (e.g. timm FastViT's layer scales):
    the partly pruned model is discarded and nothing is written; name the group's root layer
    so the user can leave it unpruned (`--debug` shows the traceback)."""
    what = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    if root is None or root not in names:
        return UserError(f"Torch-Pruning failed while pruning ({what}); nothing written")
    name = names[root]
    glob = ".".join("*" if part.isdigit() else part for part in name.split("."))
    return UserError(f"Torch-Pruning failed on the channel group rooted at {type(root).__name__} '{name}' "
                     f"({what}); leave it unpruned with --ignore '{glob}'; nothing written")


def _cut_layers(group, graph, before: dict):
    """(layer, channel indices) for each Conv/Linear in `group` that loses output channels."""
    for dep, idxs in group:
        mod = dep.target.module
        if before.get(mod) and graph.is_out_channel_pruning_fn(dep.handler):
            yield mod, [int(i) for i in idxs]


_reported: set[str] = set()


def _report(caught) -> None:
    """Torch-Pruning's warnings (e.g. bare nn.Parameters it will prune) as one stderr line each, once."""
    from prunecli.console import warn

    for w in caught:
        text = " ".join(str(w.message).split())
        key = " ".join(sorted(text.replace("[", " ").replace("]", " ").replace(",", " ").split()))
        if key not in _reported:  # the same warning with its names listed in another order is a repeat
            _reported.add(key)
            warn(f"torch-pruning: {text}")


def _out_channels(module: nn.Module) -> int | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    return None


def _record(name: str, module: nn.Module, before: int, removed: list[int], imp) -> dict:
    gone = set(removed)
    kept = [i for i in range(before) if i not in gone]
    rec = {"name": name, "kind": type(module).__name__, "channels_before": before,
           "channels_after": len(kept), "kept": kept, "removed": removed, "importance": None}
    if imp is not None and len(imp):
        summary = {"min": float(imp.min()), "max": float(imp.max()), "mean": float(imp.mean())}
        if len(imp) == before:
            summary["kept_mean"] = float(imp[kept].mean()) if kept else None
            summary["removed_mean"] = float(imp[removed].mean()) if removed else None
        rec["importance"] = summary
    return rec


def _sync_attention(model: nn.Module, num_heads: dict) -> None:
    from prunecli.pruning.attention import sync_attention, sync_model_widths

    sync_attention(model, num_heads)
    sync_model_widths(model)


def _left_alone(model: nn.Module, protected: tuple[str, ...], patterns: list[str]) -> list[nn.Module]:
    """The head, `--ignore` and the layers the architecture extensions keep whole (e.g. ReXNet's trunk)."""
    from prunecli.pruning.extensions import collect

    ignored = protected_modules(model, protected, patterns)
    return ignored + collect(model, ignored)[2]


def prune(model, input_shape, importance_factory, plan: PrunePlan, protected: tuple[str, ...],
          on_trial=None) -> tuple[nn.Module, Outcome]:
    """Prune `model` at `plan.ratio` (in place), or a copy at the ratio meeting `plan.target_macs`.

    The MAC budget is met by bisection on the channel ratio: TP's ratio counts channels, and
    MACs fall roughly quadratically with it, so no closed form fits every architecture. The
    final count is a forward pass of the pruned model, so a shape bug surfaces here.
    """
    before = count(model, input_shape)
    with phase("checking the dependency graph"):  # one build: refuse what TP would mis-read, in seconds
        refuse_sliced_concats(model, _graph(model, input_shape), _left_alone(model, protected, plan.ignore))
    if plan.latency_aware:  # latency-aware pruning (issue 16)
        from prunecli.pruning.latency_run import prune_for_latency

        return prune_for_latency(model, input_shape, importance_factory, plan, protected, before, on_trial)
    if plan.target_macs is None:
        if plan.ratio is None or not 0 < plan.ratio < 1:
            raise UserError(f"--ratio must be in (0, 1), got {plan.ratio}")
        layers, blocks = _prune_width_depth(model, input_shape, importance_factory, plan.ratio, plan, protected)
        pruned, ratio = model, plan.ratio
    else:
        target = parse_target_macs(plan.target_macs, before.macs)
        ratio, pruned, (layers, blocks) = _search(model, input_shape, importance_factory, target, plan, protected,
                                                  on_trial)
    return pruned, Outcome(ratio, before, count(pruned, input_shape), layers, list(protected) + plan.ignore,
                           blocks)


def _prune_width_depth(model, input_shape, importance_factory, ratio, plan, protected):
    """Channels at `ratio`, then (if asked) the least important blocks, as Isomorphic Pruning's ConvNeXt."""
    layers = prune_at(model, input_shape, importance_factory(seed=plan.seed), ratio, plan, protected)
    blocks = []
    if plan.remove_blocks:
        from prunecli.pruning.blocks import remove_blocks

        blocks = remove_blocks(model, plan.blocks or "", plan.remove_blocks, input_shape)
    return layers, blocks


def _trial(model, input_shape, importance_factory, ratio, plan, protected):
    trial = copy.deepcopy(model)
    for src, dst in zip(model.parameters(), trial.parameters()):  # deepcopy drops .grad (Taylor needs it)
        if src.grad is not None:
            dst.grad = src.grad.clone()
    return trial, _prune_width_depth(trial, input_shape, importance_factory, ratio, plan, protected)


def _search(model, input_shape, importance_factory, target: int, plan, protected, on_trial, tol=0.005):
    widest = max((_out_channels(m) or 0) for m in model.modules())
    resolution = 0.5 / max(1, widest)  # below this, no layer's channel count changes any more
    lo, hi = 0.0, plan.max_ratio
    best = None
    for k in range(1, 21):
        mid = (lo + hi) / 2
        with phase(f"MAC search trial {k} (ratio {mid:.4f})"):
            pruned, records = _trial(model, input_shape, importance_factory, mid, plan, protected)
            macs = count(pruned, input_shape).macs
        if on_trial is not None:
            on_trial(mid, macs)
        if macs <= target:
            best = (mid, pruned, records)
            hi = mid
            if (target - macs) / target <= tol:
                break
        else:
            lo = mid
        if hi - lo < resolution:
            break
    if best is None:
        raise UserError(
            f"cannot reach {target:.4g} MACs with --max-ratio {plan.max_ratio}; "
            "raise --max-ratio, use --global, or ask for fewer MACs removed"
        )
    return best


_PRUNER_HINT = ("Torch-Pruning failed while building its dependency graph ({what}); try --ignore GLOB for the layers "
                "around it (`prunecli profile --per-layer` lists them); nothing written")
_GRAPH_HINT = ("Torch-Pruning cannot build the dependency graph of this model ({what}); structured pruning does not "
               "support this architecture; nothing written")


@contextlib.contextmanager
def graph_errors(message: str = _GRAPH_HINT):
    """An exception while Torch-Pruning traces a model or builds its groups (a reshape or shuffle
    its index mapping cannot follow: ShuffleNet's channel shuffle, a `ZeroDivisionError` on a 1×1
    feature map) is one line, `message` with `{what}` filled in, never a traceback (`--debug`
    shows it); nothing is written. The plain graph (`_graph`) refuses the architecture; the
    pruner's build, which also forms the groups, may get past with --ignore."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        what = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        raise UserError(message.format(what=what)) from error


def _graph(model, input_shape):
    with phase("building the dependency graph"), warnings.catch_warnings(record=True) as caught, graph_errors():
        warnings.simplefilter("always")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input(input_shape))
    _report(caught)
    return graph
