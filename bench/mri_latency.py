"""Does 40% local L1 pruning make MRI reconstruction faster per slice? DEQ-EDSR and VarNet.

The full-size registry models (deq-edsr: 64 channels, 13 ResBlocks; varnet: 8 cascades, 18
channels) are built by the real CLI on phantom slices (`prunecli train --epochs 0`: untrained
weights suffice for the networks' cost, but the DEQ's iteration count depends on its weights, so
it is reported, not assumed) and pruned by it (`prunecli prune --method l1 --ratio 0.4`, the
model entries protect the 2-channel convs). Both models are then timed on the same real phantom
slices with `measure_latency_many` (interleaved A B A B), the DEQ at ONE tolerance for both
(the reference timed pruned DEQs at 4e-3 against 1e-4: fewer iterations are not a smaller net).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import machine_info, parse_args, print_table, set_torch_threads, write_results
from pruned_latency import cli

MODELS = ("deq-edsr", "varnet")
DATA = "phantom:n=4,val=4,size=64,coils=4"


def prepare(model: str, tmp: Path) -> tuple[Path, Path, dict]:
    base, pruned = tmp / f"{model}.safetensors", tmp / f"{model}.pruned.safetensors"
    cli("train", "--model", model, "--data", DATA, "--epochs", "0", "--device", "cpu", "-o", str(base), "--json")
    result = cli("prune", str(base), "--method", "l1", "--ratio", "0.4", "-o", str(pruned), "--json")
    return base, pruned, result


def time_pair(base: Path, pruned: Path, warmup: int, runs: int) -> dict:
    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.latency import measure_latency_many
    from prunecli.profiling.report import data_inputs, same_tolerance, solver_report

    a, b = ckpt.load(base), ckpt.load(pruned)
    shape = tuple(a.header.input_shape)
    inputs = data_inputs(DATA, a.header, 1)
    tol = same_tolerance([a.model, b.model], None, False)
    rows = measure_latency_many([a.model, b.model], [shape, shape], [1], "cpu", warmup, runs, inputs=inputs)
    out = {"median_ms": rows[0][0]["median_ms"], "pruned_median_ms": rows[1][0]["median_ms"]}
    out["speedup"] = out["median_ms"] / out["pruned_median_ms"]
    if hasattr(a.model, "last_iterations"):
        out["iterations"] = solver_report(a.model, inputs, shape, "cpu", tol)["iterations"]
        out["pruned_iterations"] = solver_report(b.model, inputs, shape, "cpu", tol)["iterations"]
        out["tol"] = tol
        per_iter = (out["median_ms"] / out["iterations"], out["pruned_median_ms"] / out["pruned_iterations"])
        out["speedup_per_iteration"] = per_iter[0] / per_iter[1]
    return out


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    warmup, runs = (1, 3) if args.quick else (2, 10)
    summary, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        for model in MODELS:
            base, pruned, result = prepare(model, Path(tmp))
            t = time_pair(base, pruned, warmup, runs)
            summary[model] = s = {"params_before": result["params_before"], "params_after": result["params_after"],
                                  "params_ratio": result["params_before"] / result["params_after"], **t}
            iters = f"{s['iterations']} → {s['pruned_iterations']}" if "iterations" in s else "—"
            rows.append([model, s["params_ratio"], s["median_ms"], s["pruned_median_ms"], s["speedup"],
                         s.get("speedup_per_iteration", s["speedup"]), iters])
    print_table(f"CPU time per 64×64 4-coil phantom slice, {runs} interleaved runs after {warmup} warm-up, "
                f"torch threads {threads}", ["model", "params ratio", "ms", "pruned ms", "speedup",
                                             "speedup per network pass", "solver iterations (one tol)"], rows)
    write_results("mri_latency", {"machine": machine_info(threads), "warmup": warmup, "runs": runs,
                                  "data": DATA, "models": summary})


if __name__ == "__main__":
    main()
