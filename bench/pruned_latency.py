"""Does halving MACs halve CPU latency? Unpruned vs pruned ResNet-56 and VGG-16 (CIFAR, 32x32).

Each model is pruned by the real CLI (`prunecli prune --method l1 --target-macs 0.5x`, run
in this process to skip three extra interpreter start-ups), then the four models are timed
at batch 64 under `torch.inference_mode`: one forward each per round, the order reversed
every other round, medians over the rounds after warm-up. MACs are a proxy; the measured
speedup is what a deployment sees, and it is reported next to the MAC ratio.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

from _common import (
    interleave,
    machine_info,
    median,
    pair_ratios,
    parse_args,
    print_table,
    set_torch_threads,
    write_results,
)

MODELS = ("resnet56", "vgg16")
BATCH = 64


def cli(*argv: str) -> dict | None:
    """Run a prunecli command in this process; returns its `--json` result if it printed one."""
    from prunecli.cli.app import app

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        app(list(argv), standalone_mode=False)
    text = out.getvalue().strip()
    return json.loads(text) if text.startswith("{") else None


def prepare(model: str, tmp: Path) -> tuple[Path, Path, dict]:
    """A seeded initial checkpoint and its CLI-pruned version at half the MACs."""
    base, pruned = tmp / f"{model}.safetensors", tmp / f"{model}.pruned.safetensors"
    cli("train", "--model", model, "--data", "synthetic", "--epochs", "0", "-o", str(base), "--json")
    result = cli("prune", str(base), "--method", "l1", "--target-macs", "0.5x", "-o", str(pruned), "--json")
    return base, pruned, result


def forward_timer(model, x):
    """One timed forward (seconds); `interleave` calls it once per round."""
    import torch

    def run() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            model(x)
            return time.perf_counter() - start

    return run


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    warmup, rounds = (1, 3) if args.quick else (3, 15)
    import torch

    from prunecli.io import checkpoint as ckpt

    x = torch.randn(BATCH, 3, 32, 32)
    timers, macs = {}, {}
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        for name in MODELS:
            base, pruned, result = prepare(name, Path(tmp))
            macs[name] = result
            timers[name] = forward_timer(ckpt.load(base).model, x)
            timers[f"{name} pruned"] = forward_timer(ckpt.load(pruned).model, x)
    for run in timers.values():
        for _ in range(warmup):
            run()
    secs = interleave(timers, rounds)
    rows, summary = [], {}
    for name in MODELS:
        speedup = median(pair_ratios(secs[name], secs[f"{name} pruned"]))
        mac_ratio = macs[name]["macs_ratio"]
        summary[name] = {"macs_before": macs[name]["macs_before"], "macs_after": macs[name]["macs_after"],
                         "mac_ratio": mac_ratio, "params_before": macs[name]["params_before"],
                         "params_after": macs[name]["params_after"], "channel_ratio": macs[name]["ratio"],
                         "median_ms": median(secs[name]) * 1e3,
                         "pruned_median_ms": median(secs[f"{name} pruned"]) * 1e3,
                         "speedup": speedup, "speedup_over_mac_ratio": speedup / mac_ratio}
        s = summary[name]
        rows.append([name, s["macs_before"] / 1e6, s["macs_after"] / 1e6, mac_ratio, s["median_ms"],
                     s["pruned_median_ms"], speedup, s["speedup_over_mac_ratio"]])
    print_table(f"CPU latency, batch {BATCH}, {rounds} interleaved rounds after {warmup} warm-up, "
                f"torch threads {threads}",
                ["model", "MMACs", "pruned MMACs", "MAC ratio", "ms", "pruned ms", "speedup", "speedup/MAC ratio"],
                rows)
    write_results("pruned_latency", {"machine": machine_info(threads), "batch": BATCH, "warmup": warmup,
                                     "rounds": rounds, "seconds": secs, "models": summary})


if __name__ == "__main__":
    main()
