"""`prunecli doctor`: will structured pruning work on this model? Answered in seconds, before a run.

Torch-Pruning's users find out the hard way: dependency graphs that build for hours
(Torch-Pruning #474, #527), bare `nn.Parameter`s pruned along a guessed dimension (#167, an MRI
network), pruned models whose MACs do not change (#505), and (issue 12 here) files that look
pruned and cannot be loaded. The doctor runs the same code `prune` runs, on a copy, under one
time limit, and reports each step:

1. the model builds (or the checkpoint loads) and runs a forward pass;
2. prunecli's architecture extensions accept it (or name the layer they refuse and the
   `--ignore` globs that lift the refusal);
3. the dependency graph builds; its prunable channel groups, the protected layers, the bare
   parameters and what pruning does to them, and the head counts of attention layers with the
   ratios they allow;
4. a probe pruning (`l1`, ratio 0.3, the same `--ignore`) lowers the MACs, runs, and its
   checkpoint reloads into an identical model (`verify.checked_bytes`).

Nothing is written. `diagnose` returns a JSON-able report; `ok` is False when any check failed.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch.nn as nn
import torch_pruning as tp

from prunecli.errors import UserError
from prunecli.pruning.deadline import TimeLimitExceeded, phase, time_limit

PROBE_RATIO = 0.3


class _Report:
    def __init__(self, target: str):
        self.data = {"target": target, "ok": True, "checks": [], "groups": [], "protected": [],
                     "unwrapped": [], "heads": [], "probe": {}}
        self.started = time.monotonic()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.data["checks"].append({"check": name, "ok": ok, "detail": detail,
                                    "seconds": round(time.monotonic() - self.started, 1)})
        self.data["ok"] &= ok
        return ok


def _timed_out(err: UserError) -> bool:
    return isinstance(err, TimeLimitExceeded)


def _load(target: str, input_size: int | None):
    """(model, header, entry) from a checkpoint path or a model name (built with random init)."""
    from pathlib import Path

    from prunecli.io import checkpoint as ckpt
    from prunecli.models import build_model

    if target == "-" or target.endswith(".safetensors") or Path(target).exists():
        loaded = ckpt.load(target)
        header = loaded.header
        if input_size:
            header = ckpt.new_header(header, input_shape=[header.input_shape[0], input_size, input_size])
        return loaded.model, header, loaded.entry
    from prunecli.io.schema import ModelRef

    model, entry, kwargs = build_model(target)
    shape = list(entry.input_shape)
    if input_size:
        shape = [shape[0], input_size, input_size]
    header = ckpt.new_header(None, model=ModelRef(name=target, kwargs=kwargs), task=entry.task, input_shape=shape,
                             num_classes=kwargs.get("num_classes"), lineage=[])
    return model.eval(), header, entry


def diagnose(target: str, *, ignore: list[str], timeout: float, input_size: int | None = None) -> dict:
    """Run the four checks on `target` (checkpoint or model name) within `timeout` seconds.

    Raises:
        UserError: the target itself is wrong (no such file or model, corrupt checkpoint).
    """
    report = _Report(target)
    model, header, entry = _load(target, input_size)
    shape = list(header.input_shape)
    report.data.update(model=header.model.name, input_shape=shape)
    try:
        with time_limit(timeout):
            _checks(report, model, header, entry, shape, ignore)
    except UserError as err:  # a check ran out of time: that is the diagnosis
        if not _timed_out(err):
            raise
        report.check("time limit", False, str(err))
    report.data["seconds"] = round(time.monotonic() - report.started, 1)
    return report.data


def _checks(report: _Report, model, header, entry, shape, ignore) -> None:
    from prunecli.pruning.verify import _run, forward_guard, probe_input

    try:
        with phase("forward pass"), forward_guard("the unpruned model"):
            _run(model, probe_input(shape))
    except UserError as err:
        if _timed_out(err):
            raise
        report.check("forward", False, str(err))
        return
    report.check("forward", True, f"input {'×'.join(map(str, shape))}")
    found = _extensions(report, model, entry, ignore)
    if found is None:
        return
    graph = _graph(report, model, shape, found)
    if graph is None:
        return
    _describe(report, model, graph, found)
    _probe(report, model, header, entry, shape, ignore)


def _extensions(report: _Report, model, entry, ignore):
    from prunecli.pruning.structured import extended

    names = {m: n for n, m in model.named_modules()}
    try:
        found = extended(model, entry.protected, ignore)
    except UserError as err:
        if _timed_out(err):
            raise
        report.check("extensions", False, str(err))
        return None
    report.data["protected"] = sorted({names[m] for m in found.ignored if isinstance(m, nn.Module) and m in names})
    kinds = sorted({getattr(k, "__name__", type(k).__name__) for k in found.custom})
    report.check("extensions", True, f"custom pruners for {', '.join(kinds)}" if kinds else "none needed")
    return found


def _graph(report: _Report, model, shape, found):
    from prunecli.pruning.graphcheck import refuse_sliced_concats
    from prunecli.pruning.structured import example_input, graph_errors

    try:
        with phase("building the dependency graph"), warnings.catch_warnings(record=True), graph_errors():
            warnings.simplefilter("always")
            graph = tp.DependencyGraph().build_dependency(
                model, example_input(shape), unwrapped_parameters=found.unwrapped or None,
                customized_pruners=found.custom or None, ignored_params=found.hidden or None)
        refuse_sliced_concats(model, graph, found.ignored)
    except UserError as err:
        if _timed_out(err):
            raise
        report.check("dependency graph", False, str(err))
        return None
    return graph


def _describe(report: _Report, model, graph, found) -> None:
    """Groups, bare parameters and head constraints, as the checks' evidence."""
    names = {m: n for n, m in model.named_modules()}
    groups = []
    with phase("listing the channel groups"):
        for group in graph.get_all_groups(ignored_layers=found.ignored):
            root = group[0].dep.target.module
            if root not in names:
                continue
            layers = {names[d.target.module] for d, _ in group if d.target.module in names}
            groups.append({"root": names[root], "type": type(root).__name__,
                           "channels": graph.get_out_channels(root), "layers": len(layers)})
    report.data["groups"] = groups
    report.check("dependency graph", bool(groups),
                 f"{len(groups)} prunable channel groups" if groups else "no prunable channel group")
    declared = {id(p) for p, _ in found.unwrapped}
    hidden = {id(p) for p in found.hidden}
    params = {id(p): n for n, p in model.named_parameters()}
    for p, dim in graph.unwrapped_parameters:
        fate = ("kept whole" if id(p) in hidden else
                f"cut along dim {dim} with its group" + ("" if id(p) in declared else
                                                         " (Torch-Pruning's guess: its last dim > 1)"))
        report.data["unwrapped"].append({"name": params.get(id(p), "?"), "shape": list(p.shape), "dim": dim,
                                         "declared": id(p) in declared or id(p) in hidden, "pruning": fate})
    for proj, heads in found.heads.items():
        width = getattr(proj, "out_features", getattr(proj, "out_channels", 0))
        report.data["heads"].append({"layer": names.get(proj, "?"), "heads": int(heads), "width": int(width),
                                     "head_ratios": [round(k / heads, 4) for k in range(heads)],
                                     "in_head_dims": f"whole heads (--head-ratio in steps of 1/{heads}), or the same "
                                                     "in-head dims of every head"})


def _probe(report: _Report, model, header, entry, shape, ignore) -> None:
    from prunecli.io import checkpoint as ckpt
    from prunecli.methods import get_method
    from prunecli.models import build_model
    from prunecli.pruning.structured import PrunePlan, prune
    from prunecli.pruning.verify import checked_bytes, forward_guard

    trial = copy.deepcopy(model)
    plan = PrunePlan(ratio=PROBE_RATIO, ignore=list(ignore))
    try:
        with forward_guard("while pruning"):
            pruned, outcome = prune(trial, shape, get_method("l1", kind="structured").importance, plan,
                                    entry.protected)
        fresh, _, _ = build_model(header.model.name, **header.model.kwargs)
        new = header.model_copy(update={"structure": ckpt.structure_diff(pruned, fresh),
                                        "removed_modules": ckpt.removed_modules(pruned, fresh)})
        with phase("verifying the pruned model"):
            size = len(checked_bytes(pruned, new, shape))
    except UserError as err:
        if _timed_out(err):
            raise
        report.check("probe pruning", False, str(err))
        return
    before, after = outcome.before.macs, outcome.after.macs
    report.data["probe"] = {"ratio": PROBE_RATIO, "macs_before": before, "macs_after": after,
                            "params_before": outcome.before.params, "params_after": outcome.after.params,
                            "pruned_layers": len(outcome.layers), "checkpoint_bytes": size}
    if after >= before:
        report.check("probe pruning", False, f"ratio {PROBE_RATIO} removed no MACs ({before:,} before and after): "
                     "every group is protected or ignored")
        return
    report.check("probe pruning", True, f"ratio {PROBE_RATIO}: MACs {before:,} → {after:,} "
                 f"(-{100 * (1 - after / before):.0f}%), runs, reloads identically")
