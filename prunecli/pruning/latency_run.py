"""`prune` when the device's latency decides the widths: HALP, --target-latency, --round-to auto.

The decisions (groups, table predictions, knapsack, rounding) are `pruning.latency`'s; this
module measures, builds the table, searches and checks: a prediction is a ratio to the
unpruned model's prediction, applied to the unpruned model's measured latency and checked by
measuring the pruned model (base and pruned runs interleaved). A miss by more than
`TOLERANCE` corrects the predicted target by the miss and searches again (at most `ATTEMPTS`
measurements; the closest at or under the target is kept).
"""

from __future__ import annotations

import copy
import time

import torch

from prunecli.console import err
from prunecli.errors import UserError
from prunecli.profiling import lut
from prunecli.pruning.deadline import phase
from prunecli.pruning.latency import (
    Group,
    Predictor,
    channel_groups,
    grid_widths,
    halp_widths,
    parse_target_latency,
    round_auto,
    window_widths,
)

TOLERANCE = 0.03
ATTEMPTS = 3
MEASURE_RUNS = 10


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
    started = time.perf_counter()  # not a `phase`: timing is not what --timeout bounds
    timed = lut.ensure(table, model, input_shape, wanted, plan.latency_batch, plan.device, "float32")
    path = lut.save_table(plan.table_source, key, table) if timed else (
        str(lut.table_path(plan.table_source)) if plan.table_source not in (None, "-") else None)
    reused = sum(map(len, wanted.values())) - timed
    err.print(f"latency table at batch {plan.latency_batch} on {plan.device}: {timed} layer widths timed "
              f"({time.perf_counter() - started:.1f} s)"
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
            try:
                if plan.halp:
                    keep = halp_widths(pred, aim)
                    ratio, records = None, None
                else:
                    ratio, pruned, records = _ratio_for(pred, groups, model, input_shape, factory, plan, protected,
                                                        aim, on_trial)
                    keep = _ranked(records, groups)
            except UserError:
                if not tried:
                    raise
                break  # a corrected aim the table cannot reach: keep what was measured
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
        for n, ws in window_widths(groups, ranked, plan.round_window).items():
            wanted[n] = sorted({*wanted.get(n, []), *ws})
        table, key, path = _table(model, input_shape, plan, wanted, sha)
        keep = round_auto(groups, table, ranked, plan.round_window, dims)
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
