"""Build results.md: per μ, the repo logs' numbers (research notes §2.6; the paper's own table was not
retrieved), then ours in MODE=reference and MODE=improved where those runs exist in OUT. Each row
states its protocol: search and retraining epochs and batch, and which epoch is reported (the last).
μ values the logs do not have (the smoke run's) get "—".

Usage: python collect.py OUT MU [MU ...]
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

# μ -> (GMACs, params M, zero conv1/conv2 filters, top-1 after search + compression, top-1 after retrain)
LOGS = {"0.02": (2.60, 17.08, None, 73.81, 75.21), "0.05": (2.06, 14.03, 47.17, 73.00, 74.33),
        "0.07": (1.92, 13.22, None, 73.01, 74.00), "0.1": (1.74, 12.36, None, 72.45, 73.34)}
LOGS_PROTOCOL = "search 90 ep, batch 256 → compress (τ 1e-6) → retrain 90 ep, batch 256; last epoch"
BASE = (4.09, 25.55, 76.13)
MODES = {"reference": "ours, reference", "improved": "ours, improved"}
HEADER = ["μ", "run", "protocol", "zero filters", "MACs", "params", "top-1 search", "top-1 compact",
          "max output diff", "top-1 retrain", "speedup b1"]
NONE = "—"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def header(path: Path) -> dict:
    """The prunecli header in a checkpoint's safetensors metadata (no torch needed)."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        table = json.loads(f.read(size))
    return json.loads(table["__metadata__"]["prunecli"])


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def opt(x, fmt: str, suffix: str = "") -> str:
    return NONE if x is None else format(x, fmt) + suffix


def protocol(d: Path) -> str:
    """From the checkpoints' lineage: what the search, compression and retraining did."""
    search = header(d / "search.safetensors")["lineage"][-1]["options"]
    retrain = header(d / "retrain.safetensors")["lineage"][-1]["options"]
    prune = load(d / "compact.masks.json")["options"]
    step = "snap" if search.get("prox_snap") else "convex step"
    bn = f", BN recal. {search['bn_recalibrate']}" if search.get("bn_recalibrate") else ""
    return (f"search {search['epochs']} ep, batch {search['batch_size']}, ε {search['lr']:g}, {step}{bn} → "
            f"fold {prune.get('fold', NONE)} (τ {prune['threshold']:g}) → retrain {retrain['epochs']} ep, "
            f"batch {retrain['batch_size']}; last epoch")


def run_dir(out: Path, mode: str, mu: str) -> Path | None:
    """Seed 0 of the setting `<mode>-<model>-gsparsity-mu<μ>` (None when it has not run)."""
    found = sorted(out.glob(f"{mode}-*-gsparsity-mu{mu}/seed0/retrain.profile.json"))
    return found[0].parent if found else None


def ours(out: Path, mode: str, mu: str) -> list[str]:
    d = run_dir(out, mode, mu)
    prof, zero = load(d / "retrain.profile.json"), load(d / "prune.json")
    speedup = prof.get("ratios", {}).get("speedup", {}).get("1")
    zeros = header(d / "search.safetensors")["metrics"].get("zero_groups")
    return [mu, MODES[mode], protocol(d), opt(None if zeros is None else 100 * zeros, ".1f", "%"),
            human(prof["macs"]), human(prof["params"]), f"{load(d / 'search.eval.json')['top1']:.2f}",
            f"{load(d / 'compact.eval.json')['top1']:.2f}",
            f"{zero['max_output_diff']:.3g} of {zero['output_scale']:.3g}",
            f"{load(d / 'retrain.eval.json')['top1']:.2f}", NONE if speedup is None else f"{speedup:.2f}×"]


def logs(mu: str) -> list[str]:
    macs, params, zeros, compact, retrain = LOGS.get(mu, (None,) * 5)
    return [mu, "paper (repo logs)", LOGS_PROTOCOL, opt(zeros, ".1f", "%"), opt(macs, ".2f", "G"),
            opt(params, ".2f", "M"), NONE, opt(compact, ".2f"), NONE, opt(retrain, ".2f"), NONE]


def main(out: Path, mus: list[str]) -> None:
    modes = [m for m in MODES if all(run_dir(out, m, mu) for mu in mus)]
    base = load(sorted(out.glob("base-*/seed0/base.eval.json"))[0])["top1"]
    first = load(run_dir(out, modes[0], mus[0]) / "retrain.profile.json")["compare"]
    print("# GSparsity (ResNet-50 filter pruning): the repo logs, ours (reference), ours (improved)\n")
    print(f"Runs in `{out}` ({', '.join(modes)}; seed 0 of each setting). Base model: {human(first['macs'])} MACs, "
          f"{human(first['params'])} params, top-1 {base:.2f}% (logs: {BASE[0]}G, {BASE[1]}M, {BASE[2]}). "
          "Zero filters: conv1/conv2 filters with ‖W_f‖₂ < 1e-6 after the search's last epoch. Top-1 on the "
          "validation split after the search's last epoch, after zero-filter removal, and after the last "
          "retraining epoch (never a best epoch: the validation split is the test set). Max output diff: "
          "the largest change of the logits that the compression caused on a probe batch, beside the "
          "largest logit. MACs are multiply-accumulates (ptflops' GMac in the logs); speed-up = base / "
          "retrained latency at batch 1 (`profile --compare`).\n")
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for mu in mus:
        lines.append("| " + " | ".join(logs(mu)) + " |")
        lines += ["| " + " | ".join(ours(out, mode, mu)) + " |" for mode in modes]
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
