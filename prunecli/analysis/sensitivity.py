"""Layer-wise pruning sensitivity: prune one layer alone at several ratios, measure accuracy.

Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017, §3.2 ("Determining
single layer's sensitivity to pruning"; their Fig. 2b/3) prune the lowest-L1 filters of each
layer independently and evaluate the network without retraining: layers whose accuracy
collapses early must be pruned lightly (or not at all). Distiller's `--sense filter` is the
same sweep. This is that sweep through Torch-Pruning's dependency graph, so a layer is
pruned with every layer coupled to it (residual adds, concatenations): in a ResNet, a block's
last conv is pruned together with the whole residual stream it writes to, exactly as
`prunecli prune` would, and the `coupled` field lists those layers.

Filters are ranked by the group L1 norm of `prune --method l1` (Torch-Pruning's
`GroupMagnitudeImportance(p=1)`, the layer's own L1 summed with its coupled layers'), and a
ratio r removes `C - int(C·(1 - r))` of C channels, as Torch-Pruning's pruner does.

Speed: one dependency graph is built for the whole model and never mutated; each trial
deep-copies the model and replays the group's pruning functions on the copy's modules,
so no trial pays for a graph trace. Validation batches are materialised once (on the
device). Layers sharing a group give identical trials, which are computed once.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch_pruning as tp

from prunecli.analysis.magnitude import prunable_layers
from prunecli.console import err, human, progress, warn
from prunecli.engine.loop import evaluate
from prunecli.profiling.counts import count, example_input


def n_pruned(channels: int, ratio: float) -> int:
    """Channels a ratio removes, as Torch-Pruning's BasePruner counts them (at least one is kept)."""
    return min(channels - int(channels * (1 - ratio)), channels - 1)


def load_batches(data_spec: str, header, batch_size: int, max_batches: int | None, device: str) -> list:
    """The first `max_batches` validation batches, on `device`, read once for all trials."""
    from prunecli.data.for_model import data_for

    dataset = data_for(header, data_spec)
    batches = []
    for x, y in dataset.loader("val", batch_size):
        if max_batches is not None and len(batches) >= max_batches:
            break
        batches.append((x.to(device), y.to(device)))
    return batches


def replay(model: nn.Module, group) -> nn.Module:
    """A pruned deep copy of `model`: `group`'s pruning functions applied to the copy's modules.

    The group was computed on `model`'s own graph; the deepcopy memo maps each original module
    (or unwrapped parameter) to its copy. Targets missing from the memo are the graph's own
    placeholder ops (add, concat, reshape), which hold no weights.
    """
    memo: dict = {}
    clone = copy.deepcopy(model, memo)
    graph = group._DG
    for dep, idxs in group:
        target = memo.get(id(dep.target.module))
        if target is None:
            continue
        dep.handler.__self__.pruning_dim = dep.target.pruning_dim
        pruned = dep.handler(target, list(idxs))
        if isinstance(dep.target.module, nn.Parameter):
            owner, _, attr = graph._param_to_name[dep.target.module].rpartition(".")
            setattr(clone.get_submodule(owner) if owner else clone, attr, pruned)
    return clone


def skip_reason(group, graph, names: dict, protected: set[str], heads: set) -> str | None:
    """Why a group cannot be pruned on its own here (None when it can).

    `heads` holds the attention layers (qkv projections, nn.MultiheadAttention): their output
    channels must go by whole heads, which a per-layer L1 ranking does not respect.
    """
    for dep, _ in group:
        mod = dep.target.module
        if mod not in names:
            continue
        out = graph.is_out_channel_pruning_fn(dep.handler)
        if out and names[mod] in protected:
            return f"coupled to protected layer {names[mod]}"
        if isinstance(mod, nn.modules.conv._ConvNd) and 1 < mod.groups < mod.in_channels:
            return "grouped convolution (channel groups must shrink together; not supported)"
        if mod in heads and (out or isinstance(mod, nn.MultiheadAttention)):
            return "attention heads (not supported)"
    return None


def attention_layers(model: nn.Module) -> set:
    """qkv projections of attention blocks (modules with `qkv` and `num_heads`) and nn.MultiheadAttention."""
    heads = {m for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    heads |= {m.qkv for m in model.modules() if hasattr(m, "qkv") and hasattr(m, "num_heads")}
    return heads


class Sweep:
    """One sensitivity sweep: the model, its graph, the batches and the unpruned baseline."""

    def __init__(self, model, shape, batches, device, protected: set[str]):
        from prunecli.methods import get_method

        self.model, self.shape, self.batches, self.device = model, shape, batches, device
        self.names = {m: n for n, m in model.named_modules()}
        self.protected, self.heads = protected, attention_layers(model)
        self.graph = tp.DependencyGraph().build_dependency(model, example_input(shape, device=device))
        self.importance = get_method("l1").importance()
        self.baseline = {**evaluate(model, batches, device), "macs": count(model, shape, device).macs}
        self.trials: dict[frozenset, dict] = {frozenset(): self.baseline}

    def layer(self, name: str, module, ratios, on_trial) -> dict:
        """Results of pruning `module` (with its coupled group) alone at each ratio."""
        pruner = self.graph.get_pruner_of_module(module)
        channels = pruner.get_out_channels(module)
        full = self.graph.get_pruning_group(module, pruner.prune_out_channels, list(range(channels)))
        record = {"name": name, "kind": type(module).__name__, "channels": channels,
                  "coupled": self._coupled(full, module)}
        reason = skip_reason(full, self.graph, self.names, self.protected, self.heads) if channels > 1 else "one channel"
        if reason is not None:
            return {**record, "skipped": reason}
        order = torch.argsort(self.importance(full).cpu(), stable=True).tolist()
        results = []
        for ratio in ratios:
            n = n_pruned(channels, ratio)
            group = self.graph.get_pruning_group(module, pruner.prune_out_channels, order[:n])
            try:
                results.append({"ratio": ratio, "pruned": n, **self._trial(group)})
            except RuntimeError as exc:  # a model this graph cannot prune: report it, finish the sweep
                return {**record, "skipped": f"pruned model fails: {str(exc).splitlines()[0][:200]}"}
            on_trial()
        return {**record, "results": self._with_drops(results)}

    def _trial(self, group) -> dict:
        key = frozenset((self.names.get(dep.target.module, id(dep.target.module)), dep.handler.__name__,
                         tuple(sorted(idxs))) for dep, idxs in group if dep.target.module in self.names)
        if key not in self.trials:
            pruned = replay(self.model, group).eval()
            self.trials[key] = {**evaluate(pruned, self.batches, self.device),
                                "macs": count(pruned, self.shape, self.device).macs}
        return dict(self.trials[key])

    def _coupled(self, group, root) -> list[str]:
        layers = {self.names[d.target.module] for d, _ in group if d.target.module is not root
                  and d.target.module in self.names and self.graph.is_out_channel_pruning_fn(d.handler)
                  and isinstance(d.target.module, (nn.modules.conv._ConvNd, nn.Linear))}
        return sorted(layers)

    def _with_drops(self, results: list[dict]) -> list[dict]:
        base = self.baseline
        for r in results:
            r["drop"] = base["top1"] - r["top1"]
            r["macs_ratio"] = r["macs"] / max(1, base["macs"])
        return results


class Estimate:
    """The sweep's expected time, said on stderr after the first layer and at each quarter, from
    the pace so far (a progress bar does not show in a log file; trials repeated by layers of one
    group are free, so the estimate errs long)."""

    def __init__(self, total: int):
        import time

        self.total, self.start, self.said, self.clock = total, time.perf_counter(), -1, time.perf_counter

    def done(self, trials: int) -> None:
        quarter = 4 * trials // max(1, self.total)
        if trials >= self.total or quarter <= self.said:
            return
        self.said = quarter
        spent = self.clock() - self.start
        left = spent / trials * (self.total - trials)
        err.print(f"sensitivity: {trials}/{self.total} trials in {duration(spent)}, about {duration(left)} left")


def duration(seconds: float) -> str:
    """158.2 → `2 min 38 s`; 4.2 → `4 s`."""
    s = round(seconds)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def analyze(loaded, opts) -> dict:
    """Sensitivity of every non-protected prunable layer at each of `opts.ratios`."""
    from prunecli.utils.runtime import resolve_device

    device = resolve_device(opts.device)
    model = loaded.model.to(device).eval()
    header = loaded.header
    batches = load_batches(opts.data, header, opts.batch_size, opts.max_batches, device)
    if not batches:
        from prunecli.errors import UserError

        raise UserError(f"data {opts.data!r} has no validation samples")
    protected = set(loaded.entry.protected)
    candidates = [(n, m) for n, m in prunable_layers(model) if n not in protected]
    sweep = Sweep(model, header.input_shape, batches, device, protected)
    samples = sweep.baseline["samples"]
    err.print(f"sensitivity of {header.model.name}: {len(candidates)} layers × {len(opts.ratios)} ratios, "
              f"{samples} validation samples, unpruned top-1 {sweep.baseline['top1']:.2f}%")
    layers = []
    total = len(candidates) * len(opts.ratios)
    estimate = Estimate(total)
    with progress(eta=True) as bar:
        task = bar.add_task("sensitivity", total=total, status="")
        for i, (name, module) in enumerate(candidates, 1):
            bar.update(task, status=name)
            with torch.no_grad():
                record = sweep.layer(name, module, opts.ratios, lambda: bar.advance(task))
            bar.update(task, completed=i * len(opts.ratios))
            estimate.done(i * len(opts.ratios))
            if "skipped" in record:
                warn(f"{name}: skipped, {record['skipped']}")
            else:
                record["sensitive_at"] = next(
                    (r["ratio"] for r in record["results"] if r["drop"] > opts.tolerance), None)
            layers.append(record)
    skipped = [{"name": n, "skipped": "protected"} for n, _ in prunable_layers(model) if n in protected]
    return {"data": opts.data, "baseline": sweep.baseline, "layers": layers, "skipped": skipped,
            "trials": len(sweep.trials) - 1}


def summary(report: dict):
    """Top-1 drop per layer and ratio (0.1 points; the report has them exact), split into several
    tables when wider than the terminal, the layer and where it turns sensitive in each."""
    from prunecli.analysis.tables import fitted

    ratios = report["options"]["ratios"]
    tol = report["options"]["tolerance"]
    skipped = any("skipped" in r for r in report["layers"])
    rows = []
    for r in report["layers"]:
        label = f"{r['name']} {r['channels']}"  # as the legends of Li et al.'s Fig. 2: name and filters
        if "skipped" in r:
            rows.append([label, "skipped", *[""] * len(ratios), len(r["coupled"]), r["skipped"]])
            continue
        sens = r["sensitive_at"]
        rows.append([label, "never" if sens is None else sens, *[round(x["drop"], 1) for x in r["results"]],
                     len(r["coupled"]), ""])
    base = report["baseline"]
    title = (f"top-1 drop (points) when one layer is pruned: {report['model']} on {report['data']}, "
             f"unpruned {base['top1']:.2f}% on {base['samples']} samples, {human(base['macs'])} MACs")
    columns = ["layer, filters", f"drop>{tol:g} at", *[f"r={x:g}" for x in ratios], "coupled"]
    if skipped:
        columns.append("skipped because")
    else:
        rows = [row[:-1] for row in rows]
    return fitted(title, columns, rows, keys=2)
