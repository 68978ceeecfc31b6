"""Build results.md: per μ, MACs, params and top-1 after search + compression and after
retraining, beside the GSparsity repo logs (research notes §2.6; the paper's own table was not
retrieved). μ values the logs do not have (the smoke run's) get "—".

Usage: python collect.py OUT MU [MU ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# μ -> (GMACs, params M, top-1 after search + compression, top-1 after retrain, last epoch)
LOGS = {"0.02": (2.60, 17.08, 73.81, 75.21), "0.05": (2.06, 14.03, 73.00, 74.33),
        "0.07": (1.92, 13.22, 73.01, 74.00), "0.1": (1.74, 12.36, 72.45, 73.34)}
BASE = (4.09, 25.55, 76.13)
HEADER = ["μ", "MACs", "MACs logs", "params", "params logs", "params removed", "top-1 search", "top-1 compact",
          "top-1 logs (compact)", "top-1 retrain", "top-1 logs (retrain)", "speedup b1"]
NONE = "—"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def opt(x, fmt: str) -> str:
    return NONE if x is None else format(x, fmt)


def row(out: Path, mu: str) -> list[str]:
    d = out / f"mu{mu}"
    prof, logs = load(d / "profile.json"), LOGS.get(mu, (None,) * 4)
    search = load(d / "search.eval.json")["top1"]
    zero = json.loads((d / "prune.json").read_text())
    removed = 1 - zero["params_after"] / zero["params_before"]
    speedup = prof.get("ratios", {}).get("speedup", {}).get("1")
    return [mu, human(prof["macs"]), opt(logs[0], ".2f") + ("G" if logs[0] else ""), human(prof["params"]),
            opt(logs[1], ".2f") + ("M" if logs[1] else ""), f"{removed:.1%}", f"{search:.2f}",
            f"{load(d / 'compact.eval.json')['top1']:.2f}", opt(logs[2], ".2f"),
            f"{load(d / 'retrain.eval.json')['top1']:.2f}", opt(logs[3], ".2f"),
            NONE if speedup is None else f"{speedup:.2f}×"]


def main(out: Path, mus: list[str]) -> None:
    base = load(out / "base.eval.json")["top1"]
    first = load(out / f"mu{mus[0]}" / "profile.json")["compare"]
    print("# GSparsity (ResNet-50 filter pruning): ours vs the repo logs\n")
    print(f"Runs in `{out}`. Base model: {human(first['macs'])} MACs, {human(first['params'])} params, top-1 "
          f"{base:.2f}% (logs: {BASE[0]}G, {BASE[1]}M, {BASE[2]}). Top-1 on the validation split after the "
          "search, after zero-filter removal (should equal the search's), and after the last retraining "
          "epoch; speed-up = base / retrained latency at batch 1 (`profile --compare`).\n")
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    print("\n".join(lines + ["| " + " | ".join(row(out, mu)) + " |" for mu in mus]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
