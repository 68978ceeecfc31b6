"""Build results.md: our accuracy, MACs and params per (architecture, τ) beside the paper's.

Reads what the Makefile wrote under OUT (`evaluate --json`, `profile --json --compare base`)
and prints a markdown table on stdout. The paper's numbers are typed in below from the
README tables of github.com/lijiang99/graphical-approach-for-filter-pruning (spec §1.5),
because the repo's logs are not published; architectures the paper did not run (the tiny
smoke-test models) get "—" in the paper columns.

Usage: python collect.py OUT ARCH [ARCH ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# arch -> τ -> (top-1 %, MACs, MACs reduction %, params, params reduction %), CIFAR-10.
PAPER: dict[str, dict[float, tuple[float, float, float, float, float]]] = {
    "vgg16": {0.95: (92.59, 125.25e6, 60.0, 1.38e6, 90.8), 0.90: (92.24, 124.04e6, 60.4, 1.13e6, 92.5),
              0.85: (92.08, 114.78e6, 63.4, 0.94e6, 93.7), 0.80: (91.86, 107.22e6, 65.8, 0.85e6, 94.4),
              0.75: (90.92, 82.65e6, 73.6, 0.70e6, 95.3), 0.70: (59.72, 47.86e6, 84.7, 0.44e6, 97.1)},
    "resnet20": {0.80: (91.79, 32.91e6, 19.4, 0.22e6, 19.4), 0.75: (91.73, 27.46e6, 32.7, 0.20e6, 26.3),
                 0.70: (90.90, 20.00e6, 51.0, 0.14e6, 47.0)},
    "resnet32": {0.80: (92.25, 44.92e6, 35.0, 0.30e6, 34.7), 0.75: (91.96, 38.43e6, 44.4, 0.27e6, 42.3),
                 0.70: (91.27, 24.51e6, 64.5, 0.20e6, 57.4)},
    "resnet44": {0.80: (92.72, 79.45e6, 18.5, 0.51e6, 22.2), 0.75: (92.59, 70.18e6, 28.0, 0.48e6, 26.9),
                 0.70: (92.18, 50.80e6, 47.9, 0.38e6, 42.7)},
    "resnet56": {0.80: (93.22, 101.75e6, 19.1, 0.64e6, 24.7), 0.75: (92.88, 80.77e6, 35.8, 0.57e6, 33.7),
                 0.70: (92.42, 62.95e6, 49.9, 0.48e6, 44.0)},
    "resnet110": {0.80: (92.99, 134.88e6, 46.7, 0.74e6, 57.1), 0.75: (92.97, 107.64e6, 57.5, 0.64e6, 63.1),
                  0.70: (92.72, 74.81e6, 70.4, 0.51e6, 70.4)},
    "densenet40": {0.70: (93.00, 160.49e6, 39.4, 0.79e6, 21.0), 0.65: (92.29, 92.19e6, 65.2, 0.46e6, 54.4),
                   0.60: (90.50, 36.75e6, 86.1, 0.16e6, 84.1)},
}
# Baseline (MACs, params) the paper's reductions imply; its repo states no baseline accuracy.
PAPER_BASE = {"vgg16": (313e6, 15.0e6), "resnet20": (40.8e6, 0.27e6), "resnet32": (69.1e6, 0.47e6),
              "resnet44": (97.5e6, 0.66e6), "resnet56": (125.8e6, 0.86e6), "resnet110": (253e6, 1.72e6),
              "densenet40": (265e6, 1.0e6)}
HEADER = ["arch", "τ", "top-1 % ours", "top-1 % paper", "MACs ours", "MACs paper", "MACs ↓ ours", "MACs ↓ paper",
          "params ours", "params paper", "params ↓ ours", "params ↓ paper"]
NONE = "—"


def size(n: float | None) -> str:
    """Paper style (125.25M, 0.85M), with K for the tiny smoke models so they don't all read 0.00M."""
    if n is None:
        return NONE
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def pct(x: float | None) -> str:
    return NONE if x is None else f"{x:.1f}%"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def base_row(out: Path, arch: str, taus: list[Path]) -> list[str]:
    """The unpruned model: its accuracy, and its size from any τ's `profile --compare` (all equal)."""
    top1 = load(out / arch / "base.eval.json")["top1"]
    base = load(taus[0] / "profile.json")["compare"] if taus else {}
    pm, pp = PAPER_BASE.get(arch, (None, None))
    return [arch, "base", f"{top1:.2f}", NONE, size(base.get("macs")), size(pm) + (" (implied)" if pm else ""),
            "", "", size(base.get("params")), size(pp) + (" (implied)" if pp else ""), "", ""]


def tau_row(arch: str, tau_dir: Path) -> list[str]:
    """One pruned + fine-tuned model beside the paper's cell for the same arch and τ."""
    tau = float(tau_dir.name.removeprefix("tau"))
    prof = load(tau_dir / "profile.json")
    macs, params, base = prof["macs"], prof["params"], prof["compare"]
    paper = PAPER.get(arch, {}).get(round(tau, 2))
    acc, pmacs, pmred, pparams, ppred = paper if paper else (None,) * 5
    return [arch, f"{tau:.2f}", f"{load(tau_dir / 'eval.json')['top1']:.2f}", NONE if acc is None else f"{acc:.2f}",
            size(macs), size(pmacs), pct(100 * (1 - macs / base["macs"])), pct(pmred),
            size(params), size(pparams), pct(100 * (1 - params / base["params"])), pct(ppred)]


def table(out: Path, archs: list[str]) -> list[list[str]]:
    """Per arch: the baseline row, then τ from highest (least pruned) to lowest, as the paper lists them."""
    rows = []
    for arch in archs:
        taus = sorted((d for d in (out / arch).glob("tau*") if (d / "eval.json").exists()),
                      key=lambda d: -float(d.name.removeprefix("tau")))
        rows.append(base_row(out, arch, taus))
        rows += [tau_row(arch, d) for d in taus]
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(out: Path, archs: list[str]) -> None:
    print("# Similarity-graph filter pruning (Li et al., PRL 2023): ours vs the paper\n")
    print(f"Runs in `{out}`. Ours: top-1 on the validation split after the last fine-tuning epoch; "
          "MACs/params from `prunecli profile` (BN included), reductions against our own baseline. "
          "Paper: CIFAR-10 test set, best epoch of fine-tuning; conv + dense MACs/params only "
          "(its README tables; baseline sizes implied by its reductions).\n")
    print(markdown(table(out, archs)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
