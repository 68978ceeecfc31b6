"""Rows: the runs of one setting that differ only by seed, as mean ± sample std and n.

Per run the numbers come from (first found): accuracy — `<stem>.eval.json` (the kept epoch's
weights on the split it names), else the header's `val_<metric>` (the kept epoch on the
validation split); best / last epoch — the header's `best_val_top1` / `last_val_top1` (every
classification run records both, whatever `--select` kept); MACs / params — `.flops.json`
`after`, else `.profile.json`; latency — `.profile.json` (else `.flops.json` `latency`), median
ms at one batch size; sparsity — `.masks.json` `sparsity`, else the header's `sparsity` /
`zero_groups` metrics.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from prunecli.report.collect import TRAINING, Run

RECON_METRICS = ("psnr", "ssim")
NUMBERS = ("acc", "acc2", "best", "last", "macs", "params", "latency_ms", "sparsity")
SECOND = {"psnr": "ssim"}  # reconstruction: PSNR and SSIM side by side (acc2)


@dataclass
class Stat:
    """mean, sample std (None for n < 2) and n of the runs that have the number."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Stat:
        xs = [float(v) for v in values if v is not None]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass
class Row:
    setting: str
    stems: list[str]
    method: str
    chain: str
    base: bool
    runs: list[Run]
    stats: dict[str, Stat] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    final: bool = False

    @property
    def label(self) -> str:
        return f"{self.setting}/{'|'.join(self.stems)}"

    def as_json(self) -> dict:
        return {"setting": self.setting, "stems": self.stems, "method": self.method, "base": self.base,
                "final": self.final, "lineage": self.chain, "n": len(self.runs),
                "seeds": [r.seed for r in self.runs], "checkpoints": [str(r.path) for r in self.runs],
                **{k: {"mean": s.mean, "std": s.std, "n": s.n} for k, s in self.stats.items()},
                **self.facts, "per_run": [per_run(r, self.facts["metric"], self.facts.get("batch"))
                                          for r in self.runs]}


def metric_of(run: Run, wanted: str | None = None) -> str:
    if wanted:
        return wanted
    return "psnr" if run.header.task == "reconstruction" else "top1"


def per_run(run: Run, metric: str, batch: int | None) -> dict[str, Any]:
    """The numbers of one checkpoint (None where nothing measured them)."""
    m, ev = run.header.metrics, run.side.get("eval")

    def value(key: str | None) -> float | None:
        if key is None:
            return None
        return ev.get(key) if ev and isinstance(ev.get(key), int | float) else m.get(f"val_{key}")

    acc, acc2 = value(metric), value(SECOND.get(metric))
    flops, prof = run.side.get("flops") or {}, run.side.get("profile") or {}
    counts = flops.get("after") if isinstance(flops.get("after"), dict) else prof
    latency, device = latency_at(run, batch)
    masks = run.side.get("masks") or {}
    sparsity = masks.get("sparsity") if masks.get("sparsity") is not None else m.get("sparsity", m.get("zero_groups"))
    numbers = {"acc": acc, "acc2": acc2, "best": m.get(f"best_val_{metric}"), "last": m.get(f"last_val_{metric}"),
               "macs": counts.get("macs"), "params": counts.get("params"), "latency_ms": latency, "sparsity": sparsity}
    return {"seed": run.seed, **{k: _number(v) for k, v in numbers.items()}, "device": device,
            "split": ev.get("split") if ev else None}


def _number(value: Any) -> float | int | None:
    """A number, or None for anything else a foreign sidecar may hold there."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def latencies(run: Run) -> tuple[dict[int, float], str | None]:
    """{batch: median ms} and the device name, from `.profile.json` or the `.flops.json` latency."""
    prof = run.side.get("profile")
    if prof and isinstance(prof.get("latency"), list):
        settings = prof.get("settings") if isinstance(prof.get("settings"), dict) else {}
        return _by_batch(prof["latency"]), settings.get("device_name") or settings.get("device")
    lat = (run.side.get("flops") or {}).get("latency")
    if isinstance(lat, dict) and isinstance(lat.get("batches"), list):
        return _by_batch(lat["batches"]), lat.get("device_name") or lat.get("device")
    return {}, None


def _by_batch(items: list) -> dict[int, float]:
    """{batch: median ms} of the well-formed entries (a hand-edited or foreign sidecar costs its
    numbers, not the report)."""
    out = {}
    for x in items:
        if isinstance(x, dict) and isinstance(x.get("batch"), int) and isinstance(x.get("median_ms"), int | float):
            out[x["batch"]] = float(x["median_ms"])
    return out


def latency_at(run: Run, batch: int | None) -> tuple[float | None, str | None]:
    found, device = latencies(run)
    return (found.get(batch) if batch is not None else None), device


def common_batch(runs: list[Run]) -> int | None:
    """The smallest batch size every profiled run measured (None: no common one, or no latency)."""
    sets = [set(latencies(r)[0]) for r in runs]
    sets = [s for s in sets if s]
    common = set.intersection(*sets) if sets else set()
    return min(common) if common else None


def chain(run: Run) -> str:
    """`train resnet56 (160 ep) → prune l1 (ratio=0.5) → finetune (40 ep, lr 0.01)`."""
    steps = []
    for e in run.header.lineage:
        o = e.options
        if e.command == "prune":
            keys = ("ratio", "target_macs", "target_params", "target_latency", "global", "round_to",
                    "remove_blocks", "threshold", "head_ratio", "tau", "sparsity")
            extra = ", ".join(f"{k}={o[k]}" for k in keys if o.get(k) not in (None, False, 0, "", []))
            steps.append(f"prune {o.get('method', '?')}" + (f" ({extra})" if extra else ""))
        elif e.command in TRAINING:
            what = [f"{o.get('epochs', '?')} ep", f"lr {o.get('lr', '?')}"]
            what += [f"select {o['select']}"] if o.get("select") not in (None, "last") else []
            what += ["KD"] if o.get("teacher") else []
            name = f"train {o['model']}" if e.command == "train" and o.get("model") else e.command
            steps.append(f"{name} ({', '.join(what)})")
        else:
            steps.append(e.command)
    return " → ".join(steps) or f"{run.header.model.name} (no lineage)"


def group(runs: list[Run], metric: str | None = None, batch: int | None = None) -> list[Row]:
    """One row per setting × lineage (seeds together), in the order found; `final` marks the row
    with the longest lineage of each setting (the one plotted and matched with the paper)."""
    batch = batch if batch is not None else common_batch(runs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.signature(), []).append(run)
    rows = []
    for members in groups.values():
        first = members[0]
        key = metric_of(first, metric)
        numbers = [per_run(r, key, batch) for r in members]
        row = Row(setting=first.setting, stems=sorted({r.stem for r in members}), method=first.method,
                  chain=chain(first), base="prune" not in first.commands, runs=members)
        row.stats = {k: Stat.of([x[k] for x in numbers]) for k in NUMBERS}
        row.facts = _facts(members, numbers, key, batch)
        rows.append(row)
    _warn_split(rows)
    longest: dict[str, Row] = {}
    for row in rows:
        if row.setting not in longest or len(row.runs[0].header.lineage) > len(longest[row.setting].runs[0].header.lineage):
            longest[row.setting] = row
    for row in longest.values():
        row.final = True
    return rows


def _warn_split(rows: list[Row]) -> None:
    """Runs in one setting folder with one stem that differ in more than the seed become separate
    rows; say which options differ, so a forgotten flag does not pass for a seed."""
    from prunecli.report.collect import warn

    seen: dict[tuple, Row] = {}
    for row in rows:
        key = (row.setting, tuple(row.stems))
        if key in seen:
            a, b = (json.loads(r.runs[0].signature())[2] for r in (seen[key], row))
            diff = sorted({f"{sa[0]} --{k.replace('_', '-')}" for sa, sb in zip(a, b, strict=False)
                           for k in set(sa[1]) | set(sb[1]) if sa[1].get(k) != sb[1].get(k)})
            warn(f"{row.setting}/{row.stems[0]}: runs differ in more than the seed "
                 f"({', '.join(diff) or 'the lineage'}): not averaged, separate rows")
        seen.setdefault(key, row)


def _facts(members: list[Run], numbers: list[dict], metric: str, batch: int | None) -> dict[str, Any]:
    """What the numbers mean: metric, where the accuracy came from, selected epoch, latency device."""
    splits = sorted({x["split"] for x in numbers if x["split"]})
    n_eval = sum(1 for r in members if "eval" in r.side)
    source = (f"evaluate ({', '.join(splits)})" if n_eval == len(members) else
              "header val" if n_eval == 0 else f"evaluate ({', '.join(splits)}) for {n_eval}/{len(members)}, "
              "header val for the rest")
    selects = sorted({str(r.trained.get("select", "last")) for r in members if r.trained})
    devices = sorted({x["device"] for x in numbers if x["device"] and x["latency_ms"] is not None})
    return {"metric": metric, "acc_source": source, "select": ", ".join(selects) or None,
            "task": members[0].header.task, "model": members[0].header.model.name,
            "batch": batch, "device": ", ".join(devices) or None}
