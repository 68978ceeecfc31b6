"""Build results.md: accuracy per model, data set, sparsity and schedule — the MTP report's number,
ours in reference mode, ours in improved mode — and the CKA summaries (research notes §2.4).

Reads what the Makefile wrote under OUT/<mode>/ (mode = reference, improved): `evaluate --json`
(`*.eval.json`), `prune --json` (`*.prune.json`) and `analyze --method cka` reports (`*.selfcka.json`
for one model's layers, `cka_*.cka.json` between two schedules). A mode not run for a pair (no
`OUT/<mode>/<pair>/base.eval.json`) and pairs the report did not run (the smoke models) get "—".

Usage: python collect.py OUT "PAIRS" "SPARSITIES"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODES = ("reference", "improved")
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


def ran(out: Path, mode: str, pair: str) -> bool:
    return (out / f"{mode}-{pair}-base" / "seed0" / "base.eval.json").is_file()


def schedule_result(out: Path, mode: str, pair: str, s: str, k: str) -> dict | None:
    """One mode's numbers for one schedule, or None when the mode did not run for the pair."""
    if not ran(out, mode, pair):
        return None
    d = out / f"{mode}-{pair}-{k}-{s}" / "seed0"
    pruned = load(d / "prune.json")
    return {"top1": load(d / "pruned.eval.json")["top1"], "epochs": pruned["finetune_epochs"],
            "sparsity": pruned["sparsity"], "batch": load(d / "pruned.masks.json")["options"]["batch_size"],
            "self_cka": off_diagonal_mean(load(d / "pruned.selfcka.json")["matrix"])}


def accuracy_rows(out: Path, pairs: list[str], sparsities: list[str]) -> list[list[str]]:
    rows = []
    for pair in pairs:
        base = [pct(load(out / f"{m}-{pair}-base" / "seed0" / "base.eval.json")["top1"]) if ran(out, m, pair) else NONE for m in MODES]
        for s in sparsities:
            paper = PAPER.get((pair, s), {})
            for k in SCHEDULES:
                ref, imp = (schedule_result(out, m, pair, s, k) for m in MODES)
                done = [r for r in (ref, imp) if r]
                epochs = "/".join(sorted({str(r["epochs"]) for r in done})) or NONE
                batch = " / ".join(str(r["batch"]) if r else NONE for r in (ref, imp))
                reached = f"{done[0]['sparsity']:.4f}" if done else NONE
                rows.append([pair, s, k, epochs, batch, reached, " / ".join(base), pct(paper.get(k)),
                             pct(ref and ref["top1"]), pct(imp and imp["top1"]),
                             " / ".join(f"{r['self_cka']:.3f}" if r else NONE for r in (ref, imp))])
    return rows


def cka_rows(out: Path, pairs: list[str], sparsities: list[str]) -> list[list[str]]:
    rows = []
    for pair in pairs:
        for s in sparsities:
            for c in CKA_PAIRS:
                cells = []
                for m in MODES:
                    if not ran(out, m, pair):
                        cells.append(NONE)
                        continue
                    report = load(out / f"{m}-{pair}-cka-{s}" / "seed0" / f"{c}.cka.json")
                    diag = report.get("diagonal_mean")
                    cells.append(f"{NONE if diag is None else f'{diag:.3f}'} "
                                 f"({len(report['layers_a'])} {report['options'].get('cka_modules', 'layers')})")
                rows.append([pair, s, c.replace("-", " vs "), *cells])
    return rows


PROTOCOL = (
    "Protocol: one run per cell, seed 0 (the report: seed 42, one run). Top-1 on the test split "
    "(CIFAR-100's test set; HAM10000's lesion-grouped 20%) **after the last fine-tuning epoch** of each "
    "schedule, no model selection (the report's code evaluates the last epoch too). Budget: `FT epochs` = "
    "fine-tuning epochs the schedule spent in total after the 100-epoch base training, as the report's code: "
    "10 for one-shot, 10 per step for iterative (80% spends 80, 50% spends 50: the report's confound), per "
    "layer/block for layerwise (100 per VGG layer, 15 per DenseNet block on CIFAR-100, 100 on HAM10000); "
    "SGD lr 1e-3, momentum 0.9, wd 5e-4, constant LR. `batch` = the fine-tuning batch, reference / improved. "
    "**reference** = the report's code: CIFAR-100 without augmentation, Normalize(0.5, 0.5), plain momentum, "
    "one SGD shared across layerwise steps, each script's batch size, CKA over all named_modules() for VGG; "
    "**improved** = prunecli's defaults: random crop + flip, per-channel mean/std, Nesterov, a new SGD per "
    "step, the base batch size, CKA over Conv/Linear. Sparsity over the pruned weights (Conv/Linear, and BN γ "
    "for DenseNet). Self-CKA = mean CKA between different layers of one model, reference / improved (the "
    "report: layerwise gives the most block-diagonal maps).\n"
)


def main(out: Path, pairs: list[str], sparsities: list[str]) -> None:
    print("# MTP report (Akhtar & Bathula 2023): unstructured L1 schedules, the report vs ours\n")
    print(f"Runs in `{out}/reference-*` and `{out}/improved-*` (MODE=…; seed 0 of each setting); a mode not run "
          "shows —.\n")
    print(PROTOCOL)
    print(markdown(["pair", "sparsity", "schedule", "FT epochs", "batch", "sparsity reached",
                    "base top-1 (ref / impr)", "top-1 report", "top-1 ours reference", "top-1 ours improved",
                    "self-CKA off-diag (ref / impr)"], accuracy_rows(out, pairs, sparsities)))
    print("\n## CKA between the schedules' models (same layers; diagonal mean = layer-by-layer similarity; "
          "in brackets the number of modules and which: all = every named_modules() entry, layers = Conv/Linear)\n")
    print(markdown(["pair", "sparsity", "models", "reference", "improved"], cka_rows(out, pairs, sparsities)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split())
