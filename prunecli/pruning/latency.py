"""Latency-aware structured pruning: widths the device runs fast, to a measured latency target.

Three uses of one latency lookup table (`profiling.lut`, each prunable layer timed alone at
candidate widths):

* `--round-to auto`: per channel group, the width the device runs best within ±N channels of
  the width the importance ranking chose (oneDNN and tensor cores favour multiples of 8/16):
  no slower than the ranked width, the lowest latency per channel (`round_auto`).
* `--method halp`: HALP's latency-saliency knapsack (Shen et al., NeurIPS 2022) picks every
  group's width at once (`knapsack`); the groups are Torch-Pruning's, so coupled channels
  (a residual stage) are one item and the knapsack is exact over them.
* `--target-latency` for the ranking methods: the channel ratio is searched on the table's
  predicted latency instead of MACs.

A prediction is a ratio to the unpruned model's prediction; it is applied to the unpruned
model's measured latency and checked by measuring the pruned model (the base and the pruned
model's runs interleaved): if the measurement misses the target by more than `TOLERANCE`,
the predicted target is corrected by the miss and the search runs again (at most
`ATTEMPTS` measurements).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from prunecli.console import err
from prunecli.errors import UserError
from prunecli.profiling import lut
from prunecli.pruning.deadline import phase

TOLERANCE = 0.03
ATTEMPTS = 3
MEASURE_RUNS = 10


@dataclass
class Group:
    """A Torch-Pruning channel group: its root layer, width, channel importance and the layers it sizes."""

    root: str
    channels: int
    scores: list[float]
    """Channel importance, highest first: keeping w channels keeps the w first."""
    outs: list[str]
    """Conv/Linear layers whose output channels are this group's."""
    ins: list[str] = field(default_factory=list)
    """Conv/Linear layers whose input channels are this group's."""
    min_width: int = 1

    def value(self, width: int) -> float:
        return float(sum(self.scores[:width]))


def parse_target_latency(text: str, base_ms: float) -> float:
    """`0.5x` → half the measured latency; `12ms` → 12 ms; a target at or above the base is refused."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(x|ms)\s*", text or "")
    if not m:
        raise UserError(f"--target-latency {text!r}: expected a factor of the measured latency (0.5x) or "
                        "milliseconds (12ms)")
    value = float(m.group(1))
    target = value * base_ms if m.group(2) == "x" else value
    if not 0 < target < base_ms:
        raise UserError(f"--target-latency {text} ({target:.4g} ms) must be positive and below the model's "
                        f"measured {base_ms:.4g} ms")
    return target


def channel_groups(model, input_shape, importance, plan, protected) -> list[Group]:
    """The groups Torch-Pruning would prune (same ignored layers and extensions), scored by `importance`.

    Attention groups and groups with channel grouping (grouped convs, heads) are left out: their
    widths stay the ranking's (their channels come in blocks a width grid does not describe).
    """
    from prunecli.pruning.structured import _out_channels, make_pruner

    pruner = make_pruner(model, input_shape, importance, 0.0, plan, protected)
    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
        root = group[0].dep.target.module
        if root not in names or pruner._is_atten_group(group)[0] or pruner._get_channel_groups(group) > 1:
            continue
        imp = importance(group)
        channels = _out_channels(root)
        if imp is None or channels is None or len(imp) != channels:
            continue
        imp = torch.nan_to_num(imp.detach().float().cpu(), nan=0.0)
        outs, ins = [], []
        for dep, _ in group:
            mod = dep.target.module
            if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and mod in names:
                (outs if pruner.DG.is_out_channel_pruning_fn(dep.handler) else ins).append(names[mod])
        out.append(Group(names[root], channels, sorted(imp.tolist(), reverse=True), list(dict.fromkeys(outs)),
                         [n for n in dict.fromkeys(ins) if n not in outs],
                         max(1, math.ceil(channels * (1 - plan.max_ratio) - 1e-9))))
    return out


def layer_widths(groups: list[Group], keep: dict[str, int]) -> dict[str, tuple[int, int]]:
    """layer → (in, out) channels when each group keeps `keep[root]` (others: unpruned, filled by `predict`)."""
    dims: dict[str, list[int | None]] = {}
    for g in groups:
        w = keep.get(g.root, g.channels)
        for name in g.outs:
            dims.setdefault(name, [None, None])[1] = w
        for name in g.ins:
            dims.setdefault(name, [None, None])[0] = w
    return {n: (a, b) for n, (a, b) in dims.items()}  # type: ignore[misc]


class Predictor:
    """Table-predicted latency of the model at given group widths, as a fraction of the unpruned prediction."""

    def __init__(self, table, dims, groups: list[Group]):
        self.table, self.dims, self.groups = table, dims, groups
        self.full = lut.predict(table, dims, {})

    def widths(self, keep: dict[str, int]) -> dict[str, tuple[int, int]]:
        out = {}
        for name, (win, wout) in layer_widths(self.groups, keep).items():
            cin, cout, _ = self.dims[name]
            out[name] = (cin if win is None else win, cout if wout is None else wout)
        return out

    def ratio(self, keep: dict[str, int]) -> float:
        return lut.predict(self.table, self.dims, self.widths(keep)) / max(self.full, 1e-12)


def knapsack(values: list[list[float]], costs: list[list[float]], budget: float, bins: int = 2000) -> list[int]:
    """Multiple-choice knapsack: one choice per item, maximal total value, total cost ≤ `budget`.

    Exact dynamic programme over costs in units of budget/`bins`, each rounded up (so the
    chosen set never exceeds the budget). Returns the index of each item's choice.
    """
    import numpy as np

    unit = budget / bins
    neg = -np.inf
    best = np.full(bins + 1, neg)
    best[0] = 0.0
    picks = []
    for vals, cs in zip(values, costs):
        new = np.full(bins + 1, neg)
        pick = np.full(bins + 1, -1, dtype=np.int64)
        for k, (v, c) in enumerate(zip(vals, cs)):
            ic = int(math.ceil(c / unit - 1e-9)) if c > 0 else 0
            if ic > bins:
                continue
            cand = np.full(bins + 1, neg)
            cand[ic:] = best[: bins + 1 - ic] + v
            better = cand > new
            new[better], pick[better] = cand[better], k
        best = new
        picks.append(pick)
    if not np.isfinite(best).any():
        raise UserError("the latency budget is below what the narrowest allowed widths cost; ask for a larger "
                        "--target-latency or raise --max-ratio")
    b = int(np.argmax(best))
    choice = []
    for cs, pick in zip(reversed(costs), reversed(picks)):
        k = int(pick[b])
        choice.append(k)
        b -= int(math.ceil(cs[k] / unit - 1e-9)) if cs[k] > 0 else 0
    return choice[::-1]


def candidates(g: Group) -> list[int]:
    return [w for w in lut.grid(g.channels) if w >= g.min_width] or [g.channels]


def halp_widths(pred: Predictor, target_ratio: float, steps: int = 12) -> dict[str, int]:
    """HALP's knapsack: per group a width from its grid, maximal kept importance, predicted latency ≤ target.

    A layer's cost is its latency at its group's width at the layer's unpruned input width (so
    costs add up over groups and the knapsack is exact); its input is narrowed by another group,
    which the knapsack's costs overstate. HALP re-solves after each pruning step with the new
    input widths; one shot, we search the budget handed to the knapsack instead (bisection,
    `steps`) for the largest whose solution's full prediction (input widths included) meets the
    target.
    """
    lo, hi = target_ratio, 1.0
    best = solve_knapsack(pred, target_ratio, {})  # costs overstated: its prediction is ≤ target
    for _ in range(steps):
        mid = (lo + hi) / 2
        try:
            keep = solve_knapsack(pred, mid, {})
        except UserError:
            lo = mid
            continue
        if pred.ratio(keep) <= target_ratio:
            best, lo = keep, mid
        else:
            hi = mid
    return best


def solve_knapsack(pred: Predictor, target_ratio: float, previous: dict[str, int]) -> dict[str, int]:
    """One knapsack solve: group costs at the input widths of `previous` (unpruned when empty)."""
    groups = pred.groups
    controlled = {n for g in groups for n in g.outs}
    widths = pred.widths(previous)
    scale = {n: (1.0 if dw else widths.get(n, (cin, cout))[0] / max(1, cin))
             for n, (cin, cout, dw) in pred.dims.items()}
    fixed = sum(lut.lookup(pred.table[n], widths.get(n, (0, pred.dims[n][1]))[1]) * scale[n]
                for n in pred.dims if n in pred.table and n not in controlled)
    cands = [candidates(g) for g in groups]
    costs = [[sum(lut.lookup(pred.table[n], w) * scale[n] for n in g.outs if n in pred.table) for w in ws]
             for g, ws in zip(groups, cands)]
    values = [[g.value(w) for w in ws] for g, ws in zip(groups, cands)]
    budget = target_ratio * pred.full - fixed
    if budget <= 0:
        raise UserError("the latency budget is below what the layers HALP cannot prune cost; ask for a larger "
                        "--target-latency")
    choice = knapsack(values, costs, budget)
    return {g.root: ws[k] for g, ws, k in zip(groups, cands, choice)}


def round_auto(groups: list[Group], table, ranked: dict[str, int], window: int, tie: float = 0.01) -> dict[str, int]:
    """Per group, the width within ±`window` of the ranked one that the device runs best: among the
    widths no slower than the ranked width (within `tie`), the lowest latency per kept channel, ties
    to the wider. A faster aligned width (48 beside a slow 44) wins; padding up to it is free; a
    plain narrower width that is merely proportionally cheaper does not replace the ranking's choice."""
    keep = {}
    for g in groups:
        w0 = ranked.get(g.root, g.channels)
        ws = range(max(g.min_width, w0 - window), min(g.channels, w0 + window) + 1)
        cost = {w: sum(table[n][w] for n in g.outs if n in table) for w in ws}
        allowed = [w for w in ws if cost[w] <= cost[w0] * (1 + tie)]
        best = min(cost[w] / w for w in allowed)
        keep[g.root] = max(w for w in allowed if cost[w] / w <= best * (1 + tie))
    return keep


def window_widths(groups: list[Group], ranked: dict[str, int], window: int) -> dict[str, list[int]]:
    wanted: dict[str, list[int]] = {}
    for g in groups:
        w0 = ranked.get(g.root, g.channels)
        for n in g.outs:
            wanted.setdefault(n, []).extend(range(max(g.min_width, w0 - window), min(g.channels, w0 + window) + 1))
    return wanted


def grid_widths(groups: list[Group], dims) -> dict[str, list[int]]:
    """Every timed layer at its full width; the layers a group sizes on its grid too."""
    wanted = {n: [cout] for n, (_, cout, _) in dims.items()}
    for g in groups:
        for n in g.outs:
            wanted[n] = sorted({*wanted.get(n, []), *lut.grid(g.channels)})
    return wanted


def measure(models, input_shape, batch: int, device: str) -> list[float]:
    """Median ms of each model at `batch`, their runs interleaved (`profiling.latency`)."""
    from prunecli.profiling.latency import measure_latency_many

    rows = measure_latency_many(models, [input_shape] * len(models), [batch], device, warmup=2, runs=MEASURE_RUNS)
    return [r[0]["median_ms"] for r in rows]


def _table(model, input_shape, plan, wanted: dict[str, list[int]], sha256: str) -> tuple[dict, dict, str | None]:
    """The lookup table with the `wanted` (layer, width) pairs: the cache beside the checkpoint if its
    key matches, the missing pairs timed now; written back. Returns (table, key, path)."""
    key = lut.table_key(sha256, plan.device, plan.latency_batch, "float32")
    table = lut.load_table(plan.table_source, key)
    with phase("timing layers for the latency table"):
        timed = lut.ensure(table, model, input_shape, wanted, plan.latency_batch, plan.device, "float32")
    path = lut.save_table(plan.table_source, key, table) if timed else (
        str(lut.table_path(plan.table_source)) if plan.table_source not in (None, "-") else None)
    reused = sum(map(len, wanted.values())) - timed
    err.print(f"latency table at batch {plan.latency_batch} on {plan.device}: {timed} layer widths timed"
              + (f", {reused} reused from {path}" if reused else ""))
    return table, key, path


def _ranked(records: list[dict], groups: list[Group]) -> dict[str, int]:
    after = {r["name"]: r["channels_after"] for r in records}
    return {g.root: after.get(g.root, g.channels) for g in groups}


def _trial(model, input_shape, factory, ratio, plan, protected, widths=None):
    from prunecli.pruning.structured import prune_at

    trial = copy.deepcopy(model)
    for src, dst in zip(model.parameters(), trial.parameters()):  # deepcopy drops .grad (Taylor needs it)
        if src.grad is not None:
            dst.grad = src.grad.clone()
    records = prune_at(trial, input_shape, factory(seed=plan.seed), ratio, plan, protected, widths)
    return trial, records


def _ratio_for(pred: Predictor, groups, model, input_shape, factory, plan, protected, target: float, on_trial):
    """The channel ratio whose pruned widths the table predicts at `target` (bisection, as the MAC search)."""
    lo, hi, best = 0.0, plan.max_ratio, None
    for k in range(1, 13):
        mid = (lo + hi) / 2
        with phase(f"latency search trial {k} (ratio {mid:.4f})"):
            trial, records = _trial(model, input_shape, factory, mid, plan, protected)
        predicted = pred.ratio(_ranked(records, groups))
        if on_trial is not None:
            err.print(f"  ratio {mid:.4f} → predicted {predicted:.3f}× the latency")
        if predicted <= target:
            best, hi = (mid, trial, records), mid
            if target - predicted <= 0.005:
                break
        else:
            lo = mid
    if best is None:
        raise UserError(f"cannot reach {target:.3g}× the latency with --max-ratio {plan.max_ratio}; raise "
                        "--max-ratio or ask for less")
    return best


def prune_for_latency(model, input_shape, factory, plan, protected, before, on_trial):
    """`prune` when the device's latency decides the widths (HALP, --target-latency, --round-to auto)."""
    from prunecli.profiling.counts import count
    from prunecli.pruning.structured import Outcome, _search, prune_at

    if plan.remove_blocks:
        raise UserError("--remove-blocks cannot be combined with latency-aware pruning (--method halp, "
                        "--target-latency, --round-to auto)")
    base = copy.deepcopy(model)
    groups = channel_groups(model, input_shape, factory(seed=plan.seed), plan, protected)
    dims = {n: d for n, d in lut.layer_dims(model).items()}
    sha = _sha(model)
    base_ms = measure([base], input_shape, plan.latency_batch, plan.device)[0] if plan.target_latency else None
    target_ms = parse_target_latency(plan.target_latency, base_ms) if plan.target_latency else None
    wanted = grid_widths(groups, dims) if plan.target_latency else {}
    ranked, ratio, pruned, records, attempts = None, None, None, None, []
    if plan.target_latency:
        table, key, path = _table(model, input_shape, plan, wanted, sha)
        pred = Predictor(table, dims, groups)
        goal = target_ms / base_ms
        aim, tried = goal, []
        for _ in range(ATTEMPTS):
            if plan.halp:
                keep = halp_widths(pred, aim)
                ratio, records = None, None
            else:
                ratio, pruned, records = _ratio_for(pred, groups, model, input_shape, factory, plan, protected,
                                                    aim, on_trial)
                keep = _ranked(records, groups)
            if plan.round_auto:
                break  # rounded below, measured once
            if plan.halp:
                pruned, records = _trial(model, input_shape, factory, 0.0, plan, protected, keep)
            ms = measure([base, pruned], input_shape, plan.latency_batch, plan.device)
            got = ms[1] / ms[0]
            attempts.append({"aimed": aim, "predicted": pred.ratio(keep), "measured": got})
            tried.append((got, ratio, pruned, records, keep))
            err.print(f"  predicted {pred.ratio(keep):.3f}×, measured {got:.3f}× the latency (asked {goal:.3f}×)")
            if abs(got / goal - 1) <= TOLERANCE:
                break
            aim = min(0.999, max(1e-3, aim * goal / got))
        if tried:  # the closest measurement at or under the target (+ tolerance), else the closest
            under = [t for t in tried if t[0] <= goal * (1 + TOLERANCE)]
            _, ratio, pruned, records, keep = min(under or tried, key=lambda t: abs(t[0] - goal))
        ranked = keep
    else:
        if plan.target_macs is not None:
            from prunecli.pruning.structured import parse_target_macs

            target = parse_target_macs(plan.target_macs, before.macs)
            ratio, _, (records, _) = _search(model, input_shape, factory, target, _plain(plan), protected, on_trial)
        else:
            if plan.ratio is None or not 0 < plan.ratio < 1:
                raise UserError(f"--ratio must be in (0, 1), got {plan.ratio}")
            ratio = plan.ratio
            _, records = _trial(model, input_shape, factory, ratio, _plain(plan), protected)
        ranked = _ranked(records, groups)
    if plan.round_auto:
        wanted = {**wanted, **window_widths(groups, ranked, plan.round_window)}
        wanted.update({n: sorted(set(ws)) for n, ws in wanted.items()})
        table, key, path = _table(model, input_shape, plan, wanted, sha)
        keep = round_auto(groups, table, ranked, plan.round_window)
        moved = sum(keep[g] != ranked[g] for g in keep)
        err.print(f"--round-to auto: {moved} of {len(keep)} group widths moved to a faster width (±{plan.round_window})")
        pruned, records = None, None
    if pruned is None or plan.round_auto:
        records = prune_at(model, input_shape, factory(seed=plan.seed), 0.0, plan, protected, keep)
        pruned = model
    after_ms = measure([base, pruned], input_shape, plan.latency_batch, plan.device)
    record = {"device": plan.device, "batch": plan.latency_batch, "dtype": "float32",
              "threads": torch.get_num_threads(), "before_ms": after_ms[0], "after_ms": after_ms[1],
              "speedup": after_ms[0] / after_ms[1], "target": plan.target_latency,
              "target_ratio": None if target_ms is None else target_ms / base_ms,
              "predicted_ratio": Predictor(table, dims, groups).ratio(_ranked(records, groups)),
              "table": path, "table_key": key, "widths": _ranked(records, groups), "attempts": attempts,
              "method": "halp" if plan.halp else ("round-auto" if plan.round_auto else "ratio-search"),
              "runs": MEASURE_RUNS, "protocol": "base and pruned interleaved, 2 warm-up, median"}
    err.print(f"measured at batch {plan.latency_batch} on {plan.device}: {after_ms[0]:.3g} → {after_ms[1]:.3g} ms "
              f"({record['speedup']:.2f}× faster)")
    total = sum(r["channels_before"] for r in records) or 1
    kept_ratio = ratio if ratio is not None else sum(len(r["removed"]) for r in records) / total
    return pruned, Outcome(kept_ratio, before, count(pruned, input_shape), records,
                           list(protected) + plan.ignore, latency=record)


def _plain(plan):
    import dataclasses

    return dataclasses.replace(plan, round_auto=False, halp=False, target_latency=None)


def _sha(model) -> str:
    """A hash of the architecture (every tensor's name and shape): timings depend on shapes, not
    values, so a fine-tuned copy of the same architecture reuses the table; a pruned one does not."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)};".encode())
    return h.hexdigest()
