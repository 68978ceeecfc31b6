"""Build results.md: per (architecture, τ) the paper's number, ours in reference mode, ours improved.

Reads what the Makefile wrote under OUT/<mode>/<arch>/ (`evaluate --json`, `profile --json
--compare base`, the fine-tuning log `ft.log`, the checkpoints' lineage) and prints a markdown
table on stdout. The paper's numbers are typed in below from the README tables of
github.com/lijiang99/graphical-approach-for-filter-pruning (spec §1.5), because the repo's logs
are not published; architectures the paper did not run (the tiny smoke-test models) get "—" in
the paper columns. Rows pair the two modes by the paper's name: `resnet20_keras` (reference)
and `resnet20` (improved) are both "resnet20".

Usage: python collect.py OUT
"""

from __future__ import annotations

import json
import re
import struct
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
MODES = ("reference", "improved")
HEADER = ["arch", "τ", "top-1 % paper", "top-1 % ref best", "top-1 % ref last", "top-1 % impr best",
          "top-1 % impr last", "MACs paper", "MACs ref", "MACs ref (ours)", "MACs impr", "MACs ↓ paper",
          "MACs ↓ ref", "MACs ↓ impr", "params paper", "params ref", "params ref (ours)", "params impr",
          "params ↓ paper", "params ↓ ref", "params ↓ impr"]
NONE = "—"
EPOCH_LINE = re.compile(r"epoch\s+(\d+)/(\d+)\s+loss\s+\S+\s+val top1\s+([\d.]+)%")


def paper_name(arch: str) -> str:
    return arch.replace("_keras", "")


def size(n: float | None) -> str:
    """Paper style (125.25M, 0.85M), with K for the tiny smoke models so they don't all read 0.00M."""
    if n is None:
        return NONE
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def pct(x: float | None) -> str:
    return NONE if x is None else f"{x:.1f}%"


def acc(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def drop(after: int | None, before: int | None) -> float | None:
    return None if after is None or not before else 100 * (1 - after / before)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def lineage(path: Path) -> list[dict]:
    """The checkpoint's lineage, read from the safetensors header without torch."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n)).get("__metadata__", {})
    return json.loads(meta["prunecli"])["lineage"]


def epochs_log(path: Path) -> list[float]:
    """Validation top-1 after each epoch, from the log of `train` or `finetune`."""
    if not path.exists():
        return []
    return [float(m.group(3)) for m in EPOCH_LINE.finditer(path.read_text())]


def runs(out: Path) -> dict[str, dict[str, Path]]:
    """paper name → mode → that mode's arch folder, for the archs that have a baseline evaluation."""
    found: dict[str, dict[str, Path]] = {}
    for mode in MODES:
        for d in sorted(out.glob(f"{mode}-*-base/seed0/base.eval.json")):
            found.setdefault(paper_name(d.parent.parent.name.split("-")[1]), {})[mode] = d.parent
    order = list(PAPER)
    return dict(sorted(found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def tau_dir(arch_dir: Path, tau: str) -> Path:
    """Seed 0 of the τ setting beside the base setting `<mode>-<arch>-base/seed0`."""
    return arch_dir.parent.parent / (arch_dir.parent.name.removesuffix("-base") + f"-similarity-tau{tau}") / "seed0"


def taus_of(arch_dir: Path) -> list[Path]:
    return sorted(arch_dir.parent.parent.glob(arch_dir.parent.name.removesuffix("-base") + "-similarity-tau*/seed0"))


def measure(arch_dir: Path | None, tau: str | None) -> dict:
    """One mode's numbers for the baseline (tau None) or one τ; empty when that run is missing."""
    if arch_dir is None:
        return {}
    if tau is None:
        taus = [d / "ft.profile.json" for d in taus_of(arch_dir) if (d / "ft.profile.json").exists()]
        base = load(taus[0])["compare"] if taus else {}
        log = epochs_log(arch_dir / "base.log")
        return {"best": max(log) if log else None, "last": load(arch_dir / "base.eval.json")["top1"],
                "macs": base.get("macs_conv_dense"),
                "macs_ours": base.get("macs"), "params": base.get("params_conv_dense"),
                "params_ours": base.get("params")}
    d = tau_dir(arch_dir, tau)
    if not (d / "ft.eval.json").exists():
        return {}
    prof, log = load(d / "ft.profile.json"), epochs_log(d / "ft.log")
    base = prof["compare"]
    return {"best": max(log) if log else None, "last": load(d / "ft.eval.json")["top1"],
            "macs": prof.get("macs_conv_dense"), "macs_ours": prof["macs"], "params": prof.get("params_conv_dense"),
            "params_ours": prof["params"], "macs_drop": drop(prof.get("macs_conv_dense"), base.get("macs_conv_dense")),
            "params_drop": drop(prof.get("params_conv_dense"), base.get("params_conv_dense"))}


def row(name: str, tau: str | None, ref: dict, imp: dict) -> list[str]:
    paper = PAPER.get(name, {}).get(float(tau)) if tau else None
    if tau is None:
        pm, pp = PAPER_BASE.get(name, (None, None))
        p_acc = p_mred = p_pred = None
    else:
        p_acc, pm, p_mred, pp, p_pred = paper if paper else (None,) * 5
    return [name, tau or "base", acc(p_acc), acc(ref.get("best")), acc(ref.get("last")), acc(imp.get("best")),
            acc(imp.get("last")), size(pm) + (" (implied)" if pm and tau is None else ""), size(ref.get("macs")),
            size(ref.get("macs_ours")), size(imp.get("macs")), pct(p_mred), pct(ref.get("macs_drop")),
            pct(imp.get("macs_drop")), size(pp) + (" (implied)" if pp and tau is None else ""),
            size(ref.get("params")), size(ref.get("params_ours")), size(imp.get("params")), pct(p_pred),
            pct(ref.get("params_drop")), pct(imp.get("params_drop"))]


def table(out: Path) -> tuple[list[list[str]], dict]:
    """Per arch: the baseline row, then τ from highest (least pruned) to lowest, as the paper lists them."""
    rows, facts = [], {}
    for name, modes in runs(out).items():
        taus = sorted({d.parent.name.rsplit("-tau", 1)[1] for m in modes.values() for d in taus_of(m)
                       if (d / "ft.eval.json").exists()}, key=lambda t: -float(t))
        rows.append(row(name, None, measure(modes.get("reference"), None), measure(modes.get("improved"), None)))
        rows += [row(name, t, measure(modes.get("reference"), t), measure(modes.get("improved"), t)) for t in taus]
        facts[name] = {mode: protocol(d, taus) for mode, d in modes.items()}
    return rows, facts


def protocol(arch_dir: Path, taus: list[str]) -> str:
    """Model, budgets, seed and options of one mode's run, from the checkpoints' lineage."""
    base = lineage(arch_dir / "base.safetensors")[-1]["options"]
    text = (f"`{arch_dir.parent.name.split('-')[1]}`: pretrain {base['epochs']} ep ({base['optimizer']}, wd {base['weight_decay']:g} "
            f"{base.get('weight_decay_mode', 'all')}, data `{base['data']}`), seed {base['seed']}")
    ft = next((tau_dir(arch_dir, t) / "ft.safetensors" for t in taus
               if (tau_dir(arch_dir, t) / "ft.safetensors").exists()), None)
    if ft is not None:
        entries = lineage(ft)
        prune = next((e["options"] for e in entries if e["command"] == "prune"), {})
        tune = entries[-1]["options"]
        text += (f"; prune selection `{prune.get('selection', 'strength (before --selection existed)')}`; "
                 f"fine-tune {tune['epochs']} ep ({tune['optimizer']}, bs {tune['batch_size']}), seed {tune['seed']}")
    return text


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(out: Path) -> None:
    rows, facts = table(out)
    print("# Similarity-graph filter pruning (Jiang Li et al., PRL 2023): paper, ours reference, ours improved\n")
    print(f"Runs in `{out}` (seed 0 of each setting): `reference-*` (the paper's Keras models, Keras L2, shift augmentation, the reference's "
          "tie-breaks) and `improved-*` (our models and defaults, strength tie-break); see README.md.\n")
    print("Protocol. **Accuracy**: top-1 on the validation split of the run's data (CIFAR-10: the test set). "
          "*best* = the highest over the fine-tuning epochs (base rows: pretraining epochs), which is what the "
          "paper reports (selected on the test set, so optimistic); *last* = after the last epoch, the model we "
          "keep (and prune, for the base). "
          "One run per cell (one seed). **MACs/params**: *ref*/*impr* and *paper* count conv and dense layers "
          "only (kh·kw·Cin·Cout·Hout·Wout + in·out; BN excluded), as the paper's `measure.py`; *(ours)* is "
          "`prunecli profile` (Torch-Pruning's counter: BN, biases, pooling included). Reductions are against "
          "each run's own baseline. Paper: its README tables (baseline sizes implied by its reductions; no "
          "baseline accuracy is stated).\n")
    if out.name.endswith("holdout") or any('holdout=' in load(p).get("data", "") for p in out.rglob("*.eval.json")):
        print("PROTOCOL=holdout: the epoch logs (*best*) are on the held-out training images, and the kept "
              "epoch is the best there (`--select best`); *last* is that model on the test set "
              "(`evaluate --split test`), the number to report.\n")
    print(markdown(rows))
    print("\nRuns:\n")
    for name, modes in facts.items():
        for mode, text in modes.items():
            print(f"- {name}, {mode}: {text}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
