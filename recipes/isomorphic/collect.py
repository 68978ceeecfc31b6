"""Build results.md: per pruning target the paper's row, ours in MODE=reference and ours in MODE=improved.

Reads what the Makefile wrote under OUT (`evaluate --json` of the source model, of the pruned model
before and after fine-tuning, `prune --json` and `pruned.masks.json`, `profile --json --compare
source`, the fine-tuned checkpoint's lineage) for every mode folder present (`OUT/reference/<target>`,
`OUT/improved/<target>`), and prints a markdown table on stdout. The paper's numbers are typed in from
its README / Table 2 (research notes §3.4); targets the paper did not run (the tiny smoke models) have
no paper row. Each row states its protocol: the pruning budget, and the fine-tuning epochs with the
epoch whose accuracy is reported.

Usage: python collect.py OUT TARGET:SOURCE:MACS [...]   (MACS: the paper's reported MACs, as given to
       --target-macs in MODE=improved: 4.2G, or a factor such as 0.5x)
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

MODES = ("reference", "improved")
# target -> (MACs, params, ImageNet-1K top-1 %, the budget its scripts/pruning/*.sh set by hand).
PAPER = {"deit_4.2G": (4.16e9, 20.69e6, 82.41, "p 0.5, p_h 0.5, p_d 0.25"),
         "deit_2.6G": (2.61e9, 13.07e6, 81.13, "p 0.6, p_h 0.6, p_d 0.3"),
         "deit_1.2G": (1.21e9, 5.74e6, 77.50, "p 0.5, p_h 0.5, p_d 0.1"),
         "deit_0.6G": (0.62e9, 3.08e6, 72.60, "p 0.25, p_h 0.3, p_d 0.3"),
         "convnext_8.5G": (8.48e9, 47.36e6, 83.17, "p 0.26"),
         "convnext_4.2G": (4.19e9, 25.32e6, 82.19, "p 0.25, −18 blocks")}
PAPER_FT = "300 ep, best (ImageNet val)"
# source model -> (MACs, params, top-1 %) as the paper lists it; the distilled DeiT-S/T appear in
# its table only as comparison rows (top-1), ConvNeXt-B not at all.
PAPER_BASE = {"deit_base_distilled_patch16_224": (17.69e9, 87.34e6, 83.32),
              "deit_small_distilled_patch16_224": (None, None, 81.17),
              "deit_tiny_distilled_patch16_224": (None, None, 74.52)}
HEADER = ["model", "run", "source", "budget", "MACs", "MACs / target", "params", "top-1 % pruned", "top-1 %",
          "fine-tuning", "speedup b1"]
NONE = "—"


def size(n: float | None) -> str:
    """Paper style (4.16G, 0.62G, 20.69M), scaled down to K for the tiny smoke models."""
    if n is None:
        return NONE
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= 0.1 * scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def acc(x: float | None) -> str:
    return NONE if x is None else f"{x:.2f}"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def lineage(path: Path) -> list[dict]:
    """The prunecli header's lineage, read from the safetensors metadata (no torch needed)."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    return json.loads(meta["prunecli"])["lineage"]


def target_macs(spec: str, base_macs: float) -> float:
    """The absolute MACs a target names: 4.2G, 300M or a factor of the source's MACs (0.5x)."""
    if spec.endswith("x"):
        return float(spec[:-1]) * base_macs
    return float(spec[:-1]) * {"K": 1e3, "M": 1e6, "G": 1e9}[spec[-1].upper()]


def budget(options: dict) -> str:
    """What the prune step was given: the paper's ratio (reference) or a MAC budget and the p found."""
    heads = [f"p_h {options['head_ratio']:g}"] if options.get("head_ratio") else []
    if options.get("head_dim_ratio") is not None:
        heads.append(f"p_d {options['head_dim_ratio']:g}")
    blocks = [f"−{options['remove_blocks']} blocks"] if options.get("remove_blocks") else []
    if options.get("target_macs"):
        ratio = f"{options['target_macs']} → p {options['resolved_ratio']:.4f}"
    else:
        ratio = f"p {options['ratio']:g}"
    return ", ".join([ratio, *heads, *blocks])


def finetuning(ft: Path) -> str:
    """Epochs of the fine-tuning run and which epoch's model is evaluated (prunecli keeps the last)."""
    entry = lineage(ft)[-1]
    return f"{entry['options']['epochs']} ep, last"


def run_dir(out: Path, mode: str, target: str) -> Path:
    """Seed 0 of the setting `<mode>-<target>-isomorphic`."""
    return out / f"{mode}-{target}-isomorphic" / "seed0"


def base_rows(out: Path, source: str, target: str, mode: str) -> list[list[str]]:
    """The unpruned source model: the paper's numbers and ours (size from a target's `profile --compare`)."""
    top1 = load(out / f"base-{source}" / "seed0" / "base.eval.json")["top1"]
    base = load(run_dir(out, mode, target) / "ft.profile.json")["compare"]
    rows = [[source, "ours", "", "unpruned", size(base["macs"]), "", size(base["params"]), "", acc(top1), "", ""]]
    if source in PAPER_BASE:
        pm, pp, pacc = PAPER_BASE[source]
        rows.insert(0, [source, "paper", "", "unpruned", size(pm), "", size(pp), "", acc(pacc), "", ""])
    return rows


def paper_row(target: str, source: str, goal: float) -> list[str]:
    pm, pp, pacc, pbudget = PAPER[target]
    return [target, "paper", source, pbudget, size(pm), f"{pm / goal:.3f}", size(pp), NONE, acc(pacc), PAPER_FT,
            NONE]


def mode_row(out: Path, mode: str, target: str, source: str, spec: str) -> list[str]:
    """One pruned + fine-tuned model of one mode."""
    d = run_dir(out, mode, target)
    prof, prune = load(d / "ft.profile.json"), load(d / "prune.json")
    options = load(d / "pruned.masks.json")["options"]
    goal = target_macs(spec, prune["macs_before"])
    speedup = prof.get("ratios", {}).get("speedup", {}).get("1")
    return [target, f"ours {mode}", source, budget(options), size(prof["macs"]), f"{prof['macs'] / goal:.3f}",
            size(prof["params"]), acc(load(d / "pruned.eval.json")["top1"]), acc(load(d / "ft.eval.json")["top1"]),
            finetuning(d / "ft.safetensors"), NONE if speedup is None else f"{speedup:.2f}×"]


def table(out: Path, specs: list[tuple[str, str, str]]) -> list[list[str]]:
    """Per source model (before its first target) its rows, then per target: paper, reference, improved."""
    rows, seen = [], set()
    for target, source, spec in specs:
        modes = [m for m in MODES if (run_dir(out, m, target) / "ft.profile.json").exists()]
        if not modes:
            continue
        if source not in seen:
            seen.add(source)
            rows.extend(base_rows(out, source, target, modes[0]))
        if target in PAPER:
            macs_before = load(run_dir(out, modes[0], target) / "prune.json")["macs_before"]
            rows.append(paper_row(target, source, target_macs(spec, macs_before)))
        rows.extend(mode_row(out, m, target, source, spec) for m in modes)
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(out: Path, args: list[str]) -> None:
    specs = [tuple(a.split(":", 2)) for a in args]
    print("# Isomorphic Pruning (Fang et al., ECCV 2024): ours vs the paper\n")
    print(f"Runs in `{out}` (seed 0 of each setting). **ours reference** (`MODE=reference`): the paper's hand-set ratios "
          "(`--ratio p --head-ratio p_h --head-dim-ratio p_d`), as its scripts/pruning/*.sh; **ours improved** "
          "(`MODE=improved`): the ratio searched (`--target-macs`) so the model lands on the paper's reported MACs. "
          "Both: Taylor importance from the calibration batches of the source model, round_to 2, classifier "
          "heads kept. Top-1 on the validation split: of the source model, of the pruned model before "
          "fine-tuning (`top-1 % pruned`), and after fine-tuning (`top-1 %`, the epoch the `fine-tuning` "
          "column names). MACs (multiply-accumulates, one image) and params from `prunecli profile`, i.e. "
          "Torch-Pruning's `count_ops_and_params`, the counter the paper used; `MACs / target` divides by the "
          "MACs the paper reports for the target; speed-up = latency of the source / of the fine-tuned model "
          "at batch 1 (`profile --compare`). Paper: ImageNet-1K val, best of its fine-tuning epochs "
          "(its Table 2 / README).\n")
    print(markdown(table(out, specs)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
