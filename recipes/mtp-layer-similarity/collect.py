"""Build results.md: accuracy per model, data set, sparsity and schedule beside the MTP report's,
and the CKA summaries (research notes §2.4).

Reads what the Makefile wrote under OUT: `evaluate --json` (`*.eval.json`), `prune --json`
(`*.prune.json`), and `analyze --method cka` reports (`*.selfcka.json` for one model's layers,
`cka_*.cka.json` between two schedules). Pairs the report did not run (the smoke models) get "—".

Usage: python collect.py OUT "PAIRS" "SPARSITIES"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEDULES = ("oneshot", "iterative", "layerwise")
CKA_PAIRS = ("oneshot-iterative", "oneshot-layerwise", "iterative-layerwise")
# (pair, sparsity) -> test accuracy % per schedule, from the report's results figure.
PAPER = {
    ("vgg16_cifar100", "0.8"): {"iterative": 65.79, "oneshot": 62.28, "layerwise": 55.35},
    ("vgg16_cifar100", "0.5"): {"iterative": 67.97, "oneshot": 63.40, "layerwise": 56.27},
    ("vgg16_ham", "0.8"): {"iterative": 88.59, "oneshot": 88.09, "layerwise": 83.02},
    ("vgg16_ham", "0.5"): {"iterative": 88.26, "oneshot": 88.16, "layerwise": 87.56},
    ("densenet169_cifar100", "0.8"): {"iterative": 64.24, "oneshot": 63.58, "layerwise": 59.76},
    ("densenet169_cifar100", "0.5"): {"iterative": 63.28, "oneshot": 59.88, "layerwise": 60.26},
    ("densenet169_ham", "0.8"): {"iterative": 86.60, "oneshot": 88.23, "layerwise": 87.99},
    ("densenet169_ham", "0.5"): {"iterative": 88.96, "oneshot": 86.10, "layerwise": 88.19},
}
NONE = "—"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def pct(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def off_diagonal_mean(matrix: list[list[float]]) -> float:
    """Mean CKA between different layers of one model: high = features alike across depth.
    Layers whose output was all zero (null in the report: CKA undefined) are left out."""
    n = len(matrix)
    values = [matrix[i][j] for i in range(n) for j in range(n) if i != j and matrix[i][j] is not None]
    return sum(values) / max(1, len(values))


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def accuracy_rows(out: Path, pairs: list[str], sparsities: list[str]) -> list[list[str]]:
    rows = []
    for pair in pairs:
        base = load(out / pair / "base.eval.json")["top1"]
        for s in sparsities:
            paper = PAPER.get((pair, s), {})
            for k in SCHEDULES:
                stem = out / pair / f"{k}_{s}"
                pruned = load(stem.with_name(stem.name + ".prune.json"))
                self_cka = load(stem.with_name(stem.name + ".selfcka.json"))
                rows.append([pair, s, k, str(pruned["finetune_epochs"]), f"{pruned['sparsity']:.4f}",
                             pct(base), pct(load(stem.with_name(stem.name + ".eval.json"))["top1"]),
                             pct(paper.get(k)), f"{off_diagonal_mean(self_cka['matrix']):.3f}"])
    return rows


def cka_rows(out: Path, pairs: list[str], sparsities: list[str]) -> list[list[str]]:
    rows = []
    for pair in pairs:
        for s in sparsities:
            for c in CKA_PAIRS:
                report = load(out / pair / f"cka_{s}_{c}.cka.json")
                diag = report.get("diagonal_mean")
                rows.append([pair, s, c.replace("-", " vs "), str(len(report["layers_a"])),
                             NONE if diag is None else f"{diag:.3f}"])
    return rows


def main(out: Path, pairs: list[str], sparsities: list[str]) -> None:
    print("# MTP report (Akhtar & Bathula 2023): unstructured L1 schedules, ours vs the report\n")
    print(f"Runs in `{out}`. Top-1 on the test split after each schedule's last fine-tuning epoch; "
          "`FT epochs` = fine-tuning epochs the schedule spent in total (the report's confound: iterative "
          "80% spends 80, one-shot 10); sparsity over the pruned weights. Self-CKA = mean CKA between "
          "different layers of the model (the report: layerwise gives the most block-diagonal maps).\n")
    print(markdown(["pair", "sparsity", "schedule", "FT epochs", "sparsity reached", "base top-1",
                    "top-1 ours", "top-1 report", "self-CKA off-diag"], accuracy_rows(out, pairs, sparsities)))
    print("\n## CKA between the schedules' models (same layers; diagonal mean = layer-by-layer similarity)\n")
    print(markdown(["pair", "sparsity", "models", "layers", "diagonal mean"], cka_rows(out, pairs, sparsities)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split())
