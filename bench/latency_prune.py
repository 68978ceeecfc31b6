"""Does latency-aware pruning close the MAC/latency gap? ResNet-56 (CIFAR) and ConvNeXt-Atto at batch 64.

Per model, built by the real CLI (`prunecli train --epochs 0`, seeded init: the weights do not
change the timing) and pruned by it, in this process:

* `l1`: `--method l1 --target-macs 0.5x` (the reference: today's MAC budget);
* `l1 auto`: the same with `--round-to auto` (widths moved to what the device runs best);
* `halp`: `--method halp --importance l1 --target-latency Rx` with R = l1's measured latency
  ratio (same measured latency as `l1`: does HALP keep more MACs?);
* `l1 lat`: `--method l1 --target-latency 0.5x` (does it land within 5% of the asked latency?).

Then all models are timed at batch 64 under `torch.inference_mode`, interleaved (one forward
each per round, order reversed every other round), medians over the rounds after warm-up, with
the CPU allocator kept steady as prunecli times (`prunecli.profiling.allocator`; glibc's
defaults page-fault every large activation, a cost that varies from process to process).
Reported: MACs, the speedup over the unpruned model, and speedup / MAC ratio (target ≥ 0.9).
The latency table each prune builds is timed on this machine at batch 64 (`<stem>.latency.json`).
"""

from __future__ import annotations

import os
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
from pruned_latency import cli, forward_timer

MODELS = {"resnet56": ("synthetic", (3, 32, 32)),
          "timm:convnext_atto": ("synthetic:size=224,classes=1000,n=8,val=8", (3, 224, 224))}
BATCH = 64
if os.environ.get("BENCH_MODELS"):  # e.g. BENCH_MODELS=resnet56: one model only
    MODELS = {m: MODELS[m] for m in os.environ["BENCH_MODELS"].split(",")}


def prepare(model: str, data: str, tmp: Path, quick: bool) -> dict[str, tuple[Path, dict]]:
    """The unpruned checkpoint and its four pruned versions, with each prune's `--json` result."""
    stem = model.replace(":", "_")
    base = tmp / f"{stem}.safetensors"
    cli("train", "--model", model, "--data", data, "--epochs", "0", "--device", "cpu", "-o", str(base), "--json")
    out = {"base": (base, {})}

    def prune(name: str, *args: str) -> dict:
        path = tmp / f"{stem}.{name.replace(' ', '_')}.safetensors"
        started = time.perf_counter()
        result = cli("prune", str(base), *args, "--latency-batch", str(BATCH), "--device", "cpu", "-o", str(path),
                     "--json")
        result["prune_seconds"] = time.perf_counter() - started
        out[name] = (path, result)
        return result

    prune("l1", "--method", "l1", "--target-macs", "0.5x")
    prune("l1 auto", "--method", "l1", "--target-macs", "0.5x", "--round-to", "auto")
    l1_ratio = _measured_ratio(base, out["l1"][0], data)
    prune("halp", "--method", "halp", "--importance", "l1", "--target-latency", f"{l1_ratio:.4f}x")
    prune("l1 lat", "--method", "l1", "--target-latency", "0.5x")
    return out


def _measured_ratio(base: Path, pruned: Path, data: str) -> float:
    """pruned / unpruned latency at batch 64, measured as prune measures (interleaved medians)."""
    from prunecli.io import checkpoint as ckpt
    from prunecli.pruning.latency_run import measure

    a, b = ckpt.load(str(base)), ckpt.load(str(pruned))
    ms = measure([a.model, b.model], a.header.input_shape, BATCH, "cpu")
    return ms[1] / ms[0]


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    warmup, rounds = (1, 5) if args.quick else (3, 15)
    import torch

    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.allocator import allocator

    summary, rows, mode = {}, [], "system"
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        for model, (data, shape) in MODELS.items():
            variants = prepare(model, data, Path(tmp), args.quick)
            x = torch.randn(BATCH, *shape)
            timers = {name: forward_timer(ckpt.load(str(path)).model.eval(), x) for name, (path, _) in variants.items()}
            with allocator("steady", "cpu") as mode:
                for run in timers.values():
                    for _ in range(warmup):
                        run()
                secs = interleave(timers, rounds)
            for name, (_, result) in variants.items():
                if name == "base":
                    continue
                speedup = median(pair_ratios(secs["base"], secs[name]))
                s = {"macs_after": result["macs_after"], "mac_ratio": result["macs_ratio"], "speedup": speedup,
                     "speedup_over_mac_ratio": speedup / result["macs_ratio"], "latency": result.get("latency"),
                     "median_ms": median(secs[name]) * 1e3, "base_median_ms": median(secs["base"]) * 1e3,
                     "prune_seconds": result["prune_seconds"]}
                summary[f"{model} {name}"] = s
                asked = (result.get("latency") or {}).get("target_ratio")
                rows.append([model, name, result["macs_after"] / 1e6, result["macs_ratio"], s["median_ms"], speedup,
                             s["speedup_over_mac_ratio"], f"{1 / speedup / asked:.3f}" if asked else "",
                             f"{result['prune_seconds']:.0f}"])
    print_table(f"CPU latency, batch {BATCH}, {rounds} interleaved rounds after {warmup} warm-up, torch threads "
                f"{threads}, {mode} allocator", ["model", "variant", "MMACs", "MAC ratio", "ms", "speedup", "speedup/MAC ratio",
                               "measured/asked latency", "prune s"], rows)
    name = "latency_prune" + ("_" + os.environ["BENCH_MODELS"].replace(":", "_").replace(",", "_")
                              if os.environ.get("BENCH_MODELS") else "")
    write_results(name, {"machine": machine_info(threads), "batch": BATCH, "warmup": warmup,
                         "rounds": rounds, "allocator": mode, "models": summary})


if __name__ == "__main__":
    main()
