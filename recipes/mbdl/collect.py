"""Build results.md: PSNR/SSIM per model, pruning ratio and fine-tuning strategy, time per slice
and solver iterations, beside the paper's headline speed-ups (research notes §1.7: the per-model
PSNR/SSIM table of the paper was not retrieved, so only its claims are listed).

Usage: python collect.py OUT MODEL/rRATIO [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STRATEGIES = ("supervised", "distill", "selfsup")
# The abstract's claims: test-time speed-up with "nearly no performance loss".
PAPER = {"deq": "50% faster (DEQ)", "varnet": "32% faster (DU)", "e2e": "32% faster (DU)"}
NONE = "—"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def score(path: Path) -> str:
    r = load(path)
    return f"{r['psnr']:.2f} / {r['ssim']:.4f}"


def timing(profile: dict) -> tuple[str, str, str]:
    """(ms per slice base → pruned, speed-up %, solver iterations base → pruned at one tolerance)."""
    ours, base = profile["latency"][0]["median_ms"], profile["compare"]["latency"][0]["median_ms"]
    iters = NONE
    if "solver" in profile:
        iters = (f"{profile['compare']['solver']['iterations']} → {profile['solver']['iterations']} "
                 f"(tol {profile['solver']['tol']:.0e})")
    return f"{base:.1f} → {ours:.1f}", f"{100 * (base / ours - 1):.0f}%", iters


def row(out: Path, run: str) -> list[str]:
    model, ratio = run.split("/")
    d = out / run
    prune = load(d / "prune.json")
    ms, speedup, iters = timing(load(d / "profile.json"))
    return [model, ratio[1:], f"{prune['params_before']:,} → {prune['params_after']:,}",
            score(out / model / "base.eval.json"), score(d / "pruned.eval.json"),
            *(score(d / f"{s}.eval.json") for s in STRATEGIES), ms, speedup, iters, PAPER.get(model, NONE)]


def main(out: Path, runs: list[str]) -> None:
    header = ["model", "ratio", "params", "base PSNR / SSIM", "one-shot", "supervised FT", "distill FT (no GT)",
              "self-sup FT (no GT)", "ms / slice", "speed-up", "solver iterations", "paper"]
    print("# MBDL pruning (Park et al.): ours vs the paper's claims\n")
    print(f"Runs in `{out}`. PSNR (dB) / SSIM on the validation split (magnitude, centre crop, per-image "
          "min–max normalisation; SSIM Gaussian 11, σ 1.5). Time per slice: median of `profile --data` at "
          "batch 1, base → supervised-fine-tuned pruned model, both at one solver tolerance. The distill and "
          "self-supervised strategies never read the ground truth (coil-support background, epoch chosen by "
          "validation measurement error).\n")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    print("\n".join(lines + ["| " + " | ".join(row(out, run)) + " |" for run in runs]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
