"""Build results.md: our top-1, MACs, params and speed-up per pruning target beside the paper's.

Reads what the Makefile wrote under OUT (`evaluate --json` of the source model, of the pruned
model before and after fine-tuning, `prune --json`, `profile --json --compare source`) and
prints a markdown table on stdout. The paper's numbers are typed in from its README / Table 2
(research notes §3.4); targets the paper did not run (the tiny smoke models) get "—" there.

Usage: python collect.py OUT TARGET:SOURCE:MACS [...]   (MACS as given to --target-macs: 4.2G, 0.5x)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# target -> (MACs, params, ImageNet-1K top-1 %) of the paper's pruned model.
PAPER = {"deit_4.2G": (4.16e9, 20.69e6, 82.41), "deit_2.6G": (2.61e9, 13.07e6, 81.13),
         "deit_1.2G": (1.21e9, 5.74e6, 77.50), "deit_0.6G": (0.62e9, 3.08e6, 72.60),
         "convnext_8.5G": (8.48e9, 47.36e6, 83.17), "convnext_4.2G": (4.19e9, 25.32e6, 82.19)}
# source model -> (MACs, params, top-1 %) as the paper lists it; the distilled DeiT-S/T appear in
# its table only as comparison rows (top-1), ConvNeXt-B not at all.
PAPER_BASE = {"deit_base_distilled_patch16_224": (17.69e9, 87.34e6, 83.32),
              "deit_small_distilled_patch16_224": (None, None, 81.17),
              "deit_tiny_distilled_patch16_224": (None, None, 74.52)}
HEADER = ["model", "source", "MAC target", "MACs ours", "MACs paper", "MACs / target", "params ours",
          "params paper", "top-1 % pruned", "top-1 % ours", "top-1 % paper", "speedup b1"]
NONE = "—"


def size(n: float | None) -> str:
    """Paper style (4.16G, 20.69M), scaled down to K for the tiny smoke models."""
    if n is None:
        return NONE
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def acc(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def target_macs(spec: str, base_macs: float) -> float:
    """The absolute MAC budget `prune --target-macs` aimed at: 4.2G, 300M or a factor (0.5x)."""
    if spec.endswith("x"):
        return float(spec[:-1]) * base_macs
    return float(spec[:-1]) * {"K": 1e3, "M": 1e6, "G": 1e9}[spec[-1].upper()]


def base_row(out: Path, source: str, target: str) -> list[str]:
    """The unpruned source model; its size comes from the `profile --compare` of a target pruned from it."""
    top1 = load(out / "base" / f"{source}.eval.json")["top1"]
    base = load(out / target / "profile.json")["compare"]
    pm, pp, pacc = PAPER_BASE.get(source, (None, None, None))
    return [source, "", "", size(base["macs"]), size(pm), "", size(base["params"]), size(pp), "", acc(top1),
            acc(pacc), ""]


def target_row(out: Path, target: str, source: str, spec: str) -> list[str]:
    """One pruned + fine-tuned model beside the paper's row for the same target."""
    d = out / target
    prof, prune = load(d / "profile.json"), load(d / "prune.json")
    goal = target_macs(spec, prune["macs_before"])
    pm, pp, pacc = PAPER.get(target, (None, None, None))
    speedup = prof.get("ratios", {}).get("speedup", {}).get("1")
    return [target, source, size(goal), size(prof["macs"]), size(pm), f"{prof['macs'] / goal:.3f}",
            size(prof["params"]), size(pp), acc(load(d / "pruned.eval.json")["top1"]),
            acc(load(d / "eval.json")["top1"]), acc(pacc), NONE if speedup is None else f"{speedup:.2f}×"]


def table(out: Path, specs: list[tuple[str, str, str]]) -> list[list[str]]:
    """One row per source model (before its first target), then its targets in the Makefile's order."""
    rows, seen = [], set()
    for target, source, spec in specs:
        if source not in seen:
            seen.add(source)
            rows.append(base_row(out, source, target))
        rows.append(target_row(out, target, source, spec))
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(out: Path, args: list[str]) -> None:
    specs = [tuple(a.split(":", 2)) for a in args]
    print("# Isomorphic Pruning (Fang et al., ECCV 2024): ours vs the paper\n")
    print(f"Runs in `{out}`. Ours: top-1 on the validation split of the source model, of the pruned model "
          "before fine-tuning, and after the last fine-tuning epoch; MACs/params from `prunecli profile`; "
          "speed-up = latency of the source / of the fine-tuned model at batch 1 (`profile --compare`). "
          "Paper: ImageNet-1K val, best fine-tuning epoch, MACs from Torch-Pruning's counter "
          "(its Table 2 / README).\n")
    print(markdown(table(out, specs)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
