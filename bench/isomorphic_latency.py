"""Does isomorphic pruning to half the MACs buy CPU latency? DeiT-Tiny and ConvNeXt-Atto at 224x224.

Each timm model (pretrained=False: the weights do not change the timing) is built by the real CLI
(`prunecli train --epochs 0`) and pruned by it (`prunecli prune --method isomorphic --importance l1
--target-macs 0.5x`), both run in this process to skip interpreter start-ups. The unpruned and the
pruned model are then timed with `prunecli.profiling.latency.measure_latency_many`, which
interleaves their forwards (A B A B ...) under inference mode and reports medians, at batch 1 and
8. MACs are a proxy; the measured speedup is what a deployment sees, reported next to the MAC ratio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import machine_info, parse_args, print_table, set_torch_threads, write_results
from pruned_latency import cli

MODELS = ("timm:deit_tiny_patch16_224", "timm:convnext_atto")
BATCHES = (1, 8)
DATA = "synthetic:size=224,classes=1000,n=8,val=8"


def prepare(model: str, tmp: Path) -> tuple[Path, Path, dict]:
    """A seeded initial checkpoint and its isomorphic-pruned version at half the MACs."""
    stem = model.removeprefix("timm:")
    base, pruned = tmp / f"{stem}.safetensors", tmp / f"{stem}.pruned.safetensors"
    cli("train", "--model", model, "--data", DATA, "--epochs", "0", "--device", "cpu", "-o", str(base), "--json")
    result = cli("prune", str(base), "--method", "isomorphic", "--importance", "l1", "--target-macs", "0.5x",
                 "-o", str(pruned), "--json")
    return base, pruned, result


def time_pair(base: Path, pruned: Path, warmup: int, runs: int) -> tuple[list[dict], list[dict]]:
    """Latency rows (one per batch size) of the unpruned and the pruned model, interleaved."""
    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.latency import measure_latency_many

    a, b = ckpt.load(base), ckpt.load(pruned)
    shape = tuple(a.header.input_shape)
    rows = measure_latency_many([a.model, b.model], [shape, shape], list(BATCHES), "cpu", warmup, runs)
    return rows[0], rows[1]


def summarise(result: dict, before: list[dict], after: list[dict]) -> dict:
    """MAC/param counts from `prune --json` beside the per-batch medians and speedups."""
    out = {k: result[k] for k in ("macs_before", "macs_after", "macs_ratio", "params_before", "params_after",
                                  "ratio")}
    out["batches"] = {r0["batch"]: {"median_ms": r0["median_ms"], "pruned_median_ms": r1["median_ms"],
                                    "speedup": r0["median_ms"] / r1["median_ms"]}
                      for r0, r1 in zip(before, after, strict=True)}
    return out


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    warmup, runs = (1, 3) if args.quick else (3, 15)
    summary, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        for model in MODELS:
            base, pruned, result = prepare(model, Path(tmp))
            summary[model] = s = summarise(result, *time_pair(base, pruned, warmup, runs))
            for batch, t in s["batches"].items():
                rows.append([model, batch, s["macs_before"] / 1e9, s["macs_after"] / 1e9, s["macs_ratio"],
                             t["median_ms"], t["pruned_median_ms"], t["speedup"], t["speedup"] / s["macs_ratio"]])
    print_table(f"CPU latency, {runs} interleaved runs after {warmup} warm-up, torch threads {threads}",
                ["model", "batch", "GMACs", "pruned GMACs", "MAC ratio", "ms", "pruned ms", "speedup",
                 "speedup/MAC ratio"], rows)
    write_results("isomorphic_latency", {"machine": machine_info(threads), "warmup": warmup, "runs": runs,
                                         "models": summary})


if __name__ == "__main__":
    main()
