"""Run every benchmark in turn (each in its own process, so none inherits another's imports or
threads), passing `--quick` / `--threads N` through, then print one summary line per target.

Usage: python bench/run_all.py [--quick] [--threads N]
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import RESULTS, ROOT, parse_args, print_table

SCRIPTS = ("cli_startup", "prune_speed", "train_throughput", "ddp_throughput", "pruned_latency", "similarity_speed",
           "isomorphic_latency", "mri_latency", "export_latency")


def summary_rows() -> list[list]:
    """One row per benchmark from its results file: the headline number and its target."""
    r = {name: json.loads((RESULTS / f"{name}.json").read_text()) for name in SCRIPTS}
    rows = [["cli_startup", "--help minus python -c pass (s)", r["cli_startup"]["delta_s"], "<= 0.3",
             r["cli_startup"]["pass"]],
            *[["prune_speed", f"{case}: prunecli / hand-written TP (wall)", c["wall_ratio"], "<= 1.1", c["pass"]]
              for case, c in r["prune_speed"]["cases"].items()],
            ["train_throughput", "prunecli / bare images/s", r["train_throughput"]["ratio"], ">= 0.95",
             r["train_throughput"]["pass"]],
            ["ddp_throughput", "torchrun 2 procs: prunecli / bare DDP images/s", r["ddp_throughput"]["ratio"],
             ">= 0.95", r["ddp_throughput"]["pass"]],
            ["similarity_speed", "similarity collect / plain forward", r["similarity_speed"]["ratio"], "<= 3",
             r["similarity_speed"]["pass"]]]
    for model, s in r["pruned_latency"]["models"].items():
        rows.append(["pruned_latency", f"{model} speedup at MAC ratio {s['mac_ratio']:.2f}", s["speedup"],
                     "(reported)", "-"])
    for model, s in r["isomorphic_latency"]["models"].items():
        for batch, t in s["batches"].items():
            rows.append(["isomorphic_latency", f"{model} b{batch} speedup at MAC ratio {s['macs_ratio']:.2f}",
                         t["speedup"], "(reported)", "-"])
    for model, s in r["mri_latency"]["models"].items():
        rows.append(["mri_latency", f"{model} per-slice speedup at params ratio {s['params_ratio']:.2f}",
                     s["speedup"], "(reported)", "-"])
    for model, s in r["export_latency"]["models"].items():  # export (issue 16): onnxruntime / PyTorch speed
        for batch, t in s["batches"].items():
            rows.append(["export_latency", f"{model} b{batch} pruned: onnxruntime / PyTorch speed",
                         t["ort_speed_pruned"], "(reported)", "-"])
    return rows


def main() -> None:
    args = parse_args(__doc__)
    extra = (["--quick"] if args.quick else []) + (["--threads", str(args.threads)] if args.threads else [])
    failed = []
    for name in SCRIPTS:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *extra]).returncode:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
    print_table("summary", ["benchmark", "metric", "value", "target", "met"], summary_rows())


if __name__ == "__main__":
    main()
