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
from dataclasses import dataclass, field

import torch

from prunecli.console import err
from prunecli.errors import UserError
from prunecli.profiling import lut
from prunecli.profiling.allocator import mode_for
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


def _table(model, input_shape, plan, wanted, sha256: str) -> tuple[dict, dict, str | None]:
    """The lookup table with the `wanted` = (output, input) (layer, width) pairs: the cache beside the
    checkpoint if its key matches, the missing pairs timed now; written back. Returns (table, key, path)."""
    key = lut.table_key(sha256, plan.device, plan.latency_batch, "float32")
    table = lut.load_table(plan.table_source, key)
    started = time.perf_counter()  # not a `phase`: timing is not what --timeout bounds
    timed = lut.ensure(table, model, input_shape, wanted[0], plan.latency_batch, plan.device, "float32",
                       wanted_inputs=wanted[1])
    path = lut.save_table(plan.table_source, key, table) if timed else (
        str(lut.table_path(plan.table_source)) if plan.table_source not in (None, "-") else None)
    reused = max(0, sum(len(set(ws)) for rows in wanted for ws in rows.values()) - timed)
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


@dataclass
class _Job:
    """What every step of a latency-aware prune works from."""

    model: object
    input_shape: list
    factory: object
    plan: object
    protected: tuple
    on_trial: object
    base: object = None
    groups: list = field(default_factory=list)
    dims: dict = field(default_factory=dict)
    sha: str = ""


def prune_for_latency(model, input_shape, factory, plan, protected, before, on_trial):
    """`prune` when the device's latency decides the widths (HALP, --target-latency, --round-to auto)."""
    from prunecli.profiling.counts import count
    from prunecli.pruning.structured import Outcome, prune_at

    if plan.remove_blocks:
        raise UserError("--remove-blocks cannot be combined with latency-aware pruning (--method halp, "
                        "--target-latency, --round-to auto)")
    job = _Job(model, input_shape, factory, plan, protected, on_trial, copy.deepcopy(model),
               channel_groups(model, input_shape, factory(seed=plan.seed), plan, protected),
               lut.layer_dims(model), _sha(model))
    ratio, pruned, records, attempts, target_ratio = None, None, None, [], None
    wanted = grid_widths(job.groups, job.dims) if plan.target_latency else ({}, {})
    if plan.target_latency:
        base_ms = measure([job.base], input_shape, plan.latency_batch, plan.device)[0]
        target_ratio = parse_target_latency(plan.target_latency, base_ms) / base_ms
        table, key, path = _table(model, input_shape, plan, wanted, job.sha)
        volume = lut.output_volume(model, input_shape, list(job.dims))
        ratio, pruned, records, keep, attempts = _target_search(
            job, Predictor(table, job.dims, job.groups, base_ms, volume), target_ratio)
    else:
        ratio, records = _ranked_choice(job, before)
        keep = _ranked(records, job.groups)
    if plan.round_auto:
        for rows, more in zip(wanted, window_widths(job.groups, keep, plan.round_window, job.dims)):
            for n, ws in more.items():
                rows[n] = sorted({*rows.get(n, []), *ws})
        table, key, path = _table(model, input_shape, plan, wanted, job.sha)
        ranked, keep = keep, round_auto(job.groups, table, keep, plan.round_window, job.dims)
        moved = sum(keep[g] != ranked[g] for g in keep)
        err.print(f"--round-to auto: {moved} of {len(keep)} group widths moved to a faster width (±{plan.round_window})")
        pruned = None
    if pruned is None:
        records = prune_at(model, input_shape, factory(seed=plan.seed), 0.0, plan, protected, keep)
        pruned = model
    record = _measured(job, pruned, records, Predictor(table, job.dims, job.groups), target_ratio)
    record.update({"table": path, "table_key": key, "attempts": attempts})
    total = sum(r["channels_before"] for r in records) or 1
    kept_ratio = ratio if ratio is not None else sum(len(r["removed"]) for r in records) / total
    return pruned, Outcome(kept_ratio, before, count(pruned, input_shape), records,
                           list(protected) + plan.ignore, latency=record)


def _ranked_choice(job: _Job, before) -> tuple[float, list[dict]]:
    """The widths the importance ranking chooses at `--ratio` or `--target-macs` (on a copy)."""
    from prunecli.pruning.structured import _search, parse_target_macs

    plan = _plain(job.plan)
    if plan.target_macs is not None:
        target = parse_target_macs(plan.target_macs, before.macs)
        ratio, _, (records, _) = _search(job.model, job.input_shape, job.factory, target, plan, job.protected,
                                         job.on_trial)
        return ratio, records
    if plan.ratio is None or not 0 < plan.ratio < 1:
        raise UserError(f"--ratio must be in (0, 1), got {plan.ratio}")
    return plan.ratio, _trial(job.model, job.input_shape, job.factory, plan.ratio, plan, job.protected)[1]


def _target_search(job: _Job, pred: Predictor, goal: float):
    """Widths at `goal` × the measured latency: predicted by the table, then measured; a miss beyond
    `TOLERANCE` corrects the aim by it (`ATTEMPTS` measurements). With --round-to auto the first
    prediction is kept unmeasured (it is rounded, then measured once)."""
    plan, aim, tried, attempts = job.plan, goal, [], []
    ratio = pruned = records = keep = None
    for _ in range(ATTEMPTS):
        try:
            if plan.halp:
                keep, ratio = halp_widths(pred, aim), None
            else:
                ratio, pruned, records = _ratio_for(pred, job.groups, job.model, job.input_shape, job.factory, plan,
                                                    job.protected, aim, job.on_trial)
                keep = _ranked(records, job.groups)
        except UserError:
            if not tried:
                raise
            break  # a corrected aim the table cannot reach: keep what was measured
        if plan.round_auto:
            return ratio, None, records, keep, attempts
        if plan.halp:
            pruned, records = _trial(job.model, job.input_shape, job.factory, 0.0, plan, job.protected, keep)
        ms = measure([job.base, pruned], job.input_shape, plan.latency_batch, plan.device)
        got = ms[1] / ms[0]
        attempts.append({"aimed": aim, "predicted": pred.ratio(keep), "measured": got})
        tried.append((got, ratio, pruned, records, keep))
        err.print(f"  predicted {pred.ratio(keep):.3f}×, measured {got:.3f}× the latency (asked {goal:.3f}×)")
        if abs(got / goal - 1) <= TOLERANCE:
            break
        aim = min(0.999, max(1e-3, aim * goal / got))
    under = [t for t in tried if t[0] <= goal * (1 + TOLERANCE)]  # the closest at or under, else the closest
    _, ratio, pruned, records, keep = min(under or tried, key=lambda t: abs(t[0] - goal))
    return ratio, pruned, records, keep, attempts


def _measured(job: _Job, pruned, records, pred: Predictor, target_ratio) -> dict:
    """`.flops.json`'s `latency.prune`: the unpruned and pruned model measured side by side."""
    plan = job.plan
    ms = measure([job.base, pruned], job.input_shape, plan.latency_batch, plan.device)
    widths = _ranked(records, job.groups)
    err.print(f"measured at batch {plan.latency_batch} on {plan.device}: {ms[0]:.3g} → {ms[1]:.3g} ms "
              f"({ms[0] / ms[1]:.2f}× faster)")
    return {"device": plan.device, "batch": plan.latency_batch, "dtype": "float32", "threads": torch.get_num_threads(),
            "before_ms": ms[0], "after_ms": ms[1], "speedup": ms[0] / ms[1], "target": plan.target_latency,
            "target_ratio": target_ratio, "predicted_ratio": pred.ratio(widths), "widths": widths,
            "method": "halp" if plan.halp else ("round-auto" if plan.round_auto else "ratio-search"),
            "runs": MEASURE_RUNS, "protocol": "base and pruned interleaved, 2 warm-up, median",
            "allocator": mode_for("steady", plan.device)}  # what `measure` and the table timed under


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
