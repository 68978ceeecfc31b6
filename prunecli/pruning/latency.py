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

A prediction is a ratio to the unpruned model's prediction; `pruning.latency_run` applies it
to the measured latency, searches, and checks each result by measuring it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from prunecli.errors import UserError
from prunecli.profiling import lut


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
    """Predicted latency of the model at given group widths, as a fraction of the unpruned prediction.

    The table times the Conv/Linear layers; what it does not time (normalisation, activations,
    residual adds, permutes: a tenth of ResNet-56's CPU time, far more of ConvNeXt's) is `other`
    = the measured unpruned latency − the table's sum, when a measurement is given. Those layers
    are elementwise on the Conv/Linear outputs, so `other` is scaled by the kept fraction of the
    output activation volume (`volume`: each layer's output elements per channel, one sample).
    Without a measurement (or when the isolated timings add up to more than it), only the table.
    """

    def __init__(self, table, dims, groups: list[Group], base_ms: float | None = None,
                 volume: dict[str, float] | None = None):
        self.table, self.dims, self.groups = table, dims, groups
        self.timed = lut.predict(table, dims, {})
        self.volume = {n: v for n, v in (volume or {}).items() if n in dims}
        self.total_volume = sum(v * dims[n][1] for n, v in self.volume.items())
        self.other = max(0.0, base_ms - self.timed) if base_ms and self.total_volume else 0.0
        self.full = self.timed + self.other

    def widths(self, keep: dict[str, int]) -> dict[str, tuple[int, int]]:
        out = {}
        for name, (win, wout) in layer_widths(self.groups, keep).items():
            cin, cout, _ = self.dims[name]
            out[name] = (cin if win is None else win, cout if wout is None else wout)
        return out

    def other_ms(self, widths: dict[str, tuple[int, int]]) -> float:
        """The untimed layers' share at these widths: `other` × the kept output volume."""
        if not self.other:
            return 0.0
        kept = sum(v * widths.get(n, self.dims[n][:2])[1] for n, v in self.volume.items())
        return self.other * kept / self.total_volume

    def ratio(self, keep: dict[str, int]) -> float:
        widths = self.widths(keep)
        return (lut.predict(self.table, self.dims, widths) + self.other_ms(widths)) / max(self.full, 1e-12)


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


def halp_widths(pred: Predictor, target_ratio: float, steps: int = 12, rounds: int = 3) -> dict[str, int]:
    """HALP's knapsack: per group a width from its grid, maximal kept importance, predicted latency ≤ target.

    A layer's latency depends on two groups, the one sizing its output and the one sizing its
    input; the knapsack needs costs that add up over groups, so each solve expands every layer's
    latency to first order around the previous solution's widths (`solve_knapsack`). As HALP
    re-solves after each pruning step with the new widths, we re-solve `rounds` times around the
    last solution. The expansion is not exact away from that point, so each solve searches the
    budget handed to the knapsack (bisection, `steps`) for the largest whose solution's full
    prediction (`Predictor.ratio`) meets the target; the most important solution that does is kept.
    """
    best, previous = None, {}
    for _ in range(rounds):
        keep = _budget_search(pred, target_ratio, previous, steps)
        if keep is None:
            break
        if best is None or _value(pred, keep) > _value(pred, best):
            best = keep
        if keep == previous:
            break
        previous = keep
    if best is None:
        raise UserError(f"the latency table predicts no widths reaching {target_ratio:.3g}× the latency; ask for a "
                        "larger --target-latency or raise --max-ratio")
    return best


def _value(pred: Predictor, keep: dict[str, int]) -> float:
    return sum(g.value(keep[g.root]) for g in pred.groups)


def _budget_search(pred: Predictor, target_ratio: float, previous: dict[str, int], steps: int):
    """The solution of the largest knapsack budget (between 0.5× and 1.5× the target's) whose full prediction meets
    the target, or None."""
    lo, hi, best = 0.5 * target_ratio, min(1.0, 1.5 * target_ratio), None
    for _ in range(steps):
        mid = (lo + hi) / 2
        try:
            keep = solve_knapsack(pred, mid, previous)
        except UserError:
            lo = mid
            continue
        if pred.ratio(keep) <= target_ratio:
            best, lo = keep, mid
        else:
            hi = mid
    return best


def solve_knapsack(pred: Predictor, target_ratio: float, previous: dict[str, int]) -> dict[str, int]:
    """One knapsack solve, the costs expanded around `previous`'s widths (unpruned when empty).

    Layer n at widths (in, out), P its widths in `previous`: T(in, out) ≈ T(P) + [T(P_in, out) −
    T(P)] + [T(in, P_out) − T(P)]. The first bracket is charged to the group sizing n's output,
    the second to the group sizing its input (HALP charges a layer to its own output channels at
    the previous layer's width; the input term adds what narrowing a group saves downstream).
    Exact at `previous`; the knapsack then adds over groups. The untimed layers' share
    (`Predictor.other_ms`) is linear in each group's width: charged to it exactly.
    """
    groups, dims, table = pred.groups, pred.dims, pred.table
    widths = pred.widths(previous)
    now = {n: lut.layer_ms(table, n, d, *widths.get(n, d[:2])) for n, d in dims.items() if n in table}
    cands = [candidates(g) for g in groups]
    costs = []
    for g, ws in zip(groups, cands):
        outs = [n for n in g.outs if n in now]
        ins = [n for n in g.ins if n in now and not dims[n][2]]
        per_channel = pred.other * sum(pred.volume.get(n, 0.0) for n in g.outs) / max(pred.total_volume, 1e-12)
        prev = previous.get(g.root, g.channels)
        costs.append([sum(lut.layer_ms(table, n, dims[n], widths.get(n, dims[n][:2])[0], w) - now[n] for n in outs)
                      + sum(lut.layer_ms(table, n, dims[n], w, widths.get(n, dims[n][:2])[1]) - now[n] for n in ins)
                      + per_channel * (w - prev) for w in ws])
    floor = [min(c) for c in costs]
    costs = [[c - f for c in cs] for cs, f in zip(costs, floor)]
    values = [[g.value(w) for w in ws] for g, ws in zip(groups, cands)]
    budget = target_ratio * pred.full - sum(now.values()) - pred.other_ms(widths) - sum(floor)
    if budget <= 0:
        raise UserError("the latency budget is below what the narrowest allowed widths cost; ask for a larger "
                        "--target-latency")
    choice = knapsack(values, costs, budget)
    return {g.root: ws[k] for g, ws, k in zip(groups, cands, choice)}


def round_auto(groups: list[Group], table, ranked: dict[str, int], window: int, dims=None,
               tie: float = 0.01) -> dict[str, int]:
    """Per group, the width within ±`window` of the ranked one that the device runs best: among the
    widths no slower than the ranked width (within `tie`), the lowest latency per kept channel, ties
    to the wider. A faster aligned width (48 beside a slow 44) wins; a plain narrower width that
    is merely proportionally cheaper does not replace the ranking's choice. A group's cost is its
    layers at each width plus (with `dims`, `lut.layer_dims`) the layers it feeds, whose input it
    widens, at their own ranked output width (`lut.layer_ms`: their input-width row where the table
    has one, which knows that 11 input channels cost what 16 do on blocked kernels; else a linear
    scaling), so padding is free only where the device says so."""
    out_width = {n: ranked.get(g.root, g.channels) for g in groups for n in g.outs}
    keep = {}
    for g in groups:
        w0 = ranked.get(g.root, g.channels)
        ws = range(max(g.min_width, w0 - window), min(g.channels, w0 + window) + 1)
        fed = [n for n in (g.ins if dims else []) if n in table and not dims[n][2]]
        cost = {w: sum(table[n][w] for n in g.outs if n in table)
                + sum(lut.layer_ms(table, n, dims[n], w, out_width.get(n, dims[n][1])) for n in fed) for w in ws}
        allowed = [w for w in ws if cost[w] <= cost[w0] * (1 + tie)]
        best = min(cost[w] / w for w in allowed)
        keep[g.root] = max(w for w in allowed if cost[w] / w <= best * (1 + tie))
    return keep


def window_widths(groups: list[Group], ranked: dict[str, int], window: int,
                  dims) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(output widths, input widths) to time for `round_auto`: each group's window on the layers it
    sizes, as outputs and as the inputs of the layers it feeds (and those at their full input)."""
    wanted: dict[str, list[int]] = {}
    inputs: dict[str, list[int]] = {}
    for g in groups:
        w0 = ranked.get(g.root, g.channels)
        ws = range(max(g.min_width, w0 - window), min(g.channels, w0 + window) + 1)
        for n in g.outs:
            wanted.setdefault(n, []).extend(ws)
        for n in g.ins:
            if n in dims and not dims[n][2]:
                inputs.setdefault(n, []).extend([*ws, dims[n][0]])
    return wanted, inputs


def grid_widths(groups: list[Group], dims) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(output widths, input widths) to time for HALP and --target-latency: every timed layer at
    its full width; the layers a group sizes on its grid too, as outputs and as inputs."""
    wanted = {n: [cout] for n, (_, cout, _) in dims.items()}
    inputs: dict[str, list[int]] = {}
    for g in groups:
        for n in g.outs:
            wanted[n] = sorted({*wanted.get(n, []), *lut.grid(g.channels)})
        for n in g.ins:
            if n in dims and not dims[n][2]:
                inputs[n] = sorted({*inputs.get(n, []), *lut.grid(g.channels), dims[n][0]})
    return wanted, inputs
