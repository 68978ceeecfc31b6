"""What `prunecli profile` measures and prints: counts, latency, memory, and a comparison.

Kept apart from the CLI so tests and notebooks can call `profile_checkpoints` directly. MACs and
params are counted on CPU for one sample (they do not depend on the device); latency and
memory are measured on the chosen device. The `<stem>.flops.json` sidecar beside the
checkpoint is (re)written with the counts against a fresh, unpruned build of the same model
and the latest latency measurement, so the numbers travel with the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunecli.errors import UserError


def parse_batch_sizes(text: str) -> list[int]:
    """`"1,64"` → `[1, 64]`; anything else than positive integers is a user error."""
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise UserError(f"--batch-sizes must be positive integers separated by commas, got {text!r}")
        sizes.append(int(item))
    return list(dict.fromkeys(sizes))


def check_options(runs: int, warmup: int, threads: int | None, checkpoint: str, compare: str | None) -> None:
    if runs < 1:
        raise UserError(f"--runs must be at least 1, got {runs}")
    if warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {warmup}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if checkpoint == "-" and compare == "-":
        raise UserError("only one of CKPT and --compare can be read from stdin (`-`)")


def device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def profile_many(srcs: list[str], device: str, batch_sizes: list[int], runs: int, warmup: int,
                 per_layer: bool, data: str | None = None, tol: float | None = None,
                 own_tol: bool = False, stat: str = "median", backend: str = "torch",
                 layer_latency: str | None = None, allocator: str = "steady") -> list[dict[str, Any]]:
    """Counts, latency and memory of each checkpoint (timed runs interleaved); writes the first
    one's flops sidecar."""
    from prunecli.console import err
    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.counts import count
    from prunecli.profiling.latency import measure_latency_many, peak_memory
    from prunecli.pruning.sparse import sparse_counts

    loaded = [ckpt.load(src) for src in srcs]
    shapes = [list(item.header.input_shape) for item in loaded]
    err.print(f"timing {' and '.join(srcs)} on {device}: batch sizes {batch_sizes}, "
              f"{warmup} warm-up + {runs} timed runs{' (interleaved)' if len(srcs) > 1 else ''}, "
              f"{stat} by {timing_protocol(device, stat)['timer']}")
    solver_tol = same_tolerance([item.model for item in loaded], tol, own_tol)
    inputs = data_inputs(data, loaded[0].header, max(batch_sizes)) if data else None
    timed = [item.model for item in loaded]
    # export (issue 16): --backend onnxruntime times each model exported to ONNX (prunecli/export/ort.py)
    if backend == "onnxruntime":
        import torch

        from prunecli.export.ort import ort_model

        timed = [ort_model(item.model, shape, item.header.model.name, device, torch.get_num_threads())
                 for item, shape in zip(loaded, shapes)]
    latencies = measure_latency_many(timed, shapes, batch_sizes, device, warmup, runs, inputs=inputs, stat=stat,
                                     allocator=allocator)
    results = []
    for i, (src, item, shape, latency) in enumerate(zip(srcs, loaded, shapes, latencies)):
        counted = count(item.model, shape)
        nonzero, sparse_macs = sparse_counts(item.model, counted)
        memory = [peak_memory(item.model, shape, b, device) for b in batch_sizes]
        result: dict[str, Any] = {
            "checkpoint": src, "model": item.header.model.name, "sha256": item.sha256, "input_shape": shape,
            "macs": counted.macs, "params": counted.params, "nonzero_params": nonzero, "sparse_macs": sparse_macs,
            "latency": latency, "memory": memory,
            "macs_conv_dense": counted.macs_conv_dense, "params_conv_dense": counted.params_conv_dense,
        }
        if nonzero < 0.99 * counted.params:
            result["note"] = (f"{1 - nonzero / counted.params:.1%} of the weights are zeros: dense kernels still "
                              "compute them, so latency and memory do not improve; sparse MACs are the work a "
                              "sparse kernel would do")
        if hasattr(item.model, "last_iterations"):  # an iterative solver: speed = network × iterations
            result["solver"] = solver_report(item.model, inputs, shape, device, solver_tol)
        if per_layer:
            result["layers"] = [vars(layer).copy() for layer in counted.layers.values()]
            if layer_latency:  # per-layer latency (issue 16): each layer alone, at each batch size
                _add_layer_latency(result, item.model, shape, batch_sizes, device, layer_latency, warmup, runs,
                                   allocator)
        sparse = {"macs": sparse_macs, "params": nonzero} if nonzero < counted.params else None
        result["backend"] = backend  # export (issue 16)
        result["sidecar"] = (write_flops(src, item, counted, sparse, latency, memory, device, runs, warmup, backend)
                             if i == 0 else None)
        results.append(result)
    return results


def _add_layer_latency(result, model, shape, batch_sizes, device, dtype, warmup, runs, allocator) -> None:
    """`latency_ms` ({batch: median ms}) on each per-layer row; `layer_latency` says how it was measured."""
    from prunecli.profiling.lut import time_layers

    names = [row["name"] for row in result["layers"]]
    timed = {b: time_layers(model, shape, names, b, device, dtype, warmup, runs, allocator) for b in batch_sizes}
    for row in result["layers"]:
        row["latency_ms"] = {str(b): timed[b].get(row["name"]) for b in batch_sizes}
    result["layer_latency"] = {"dtype": dtype, "batch_sizes": batch_sizes, "warmup": warmup, "runs": runs,
                               "protocol": "each layer alone on a random input of its shape in the model, "
                                           "timed runs interleaved across layers, median"}


def same_tolerance(models, tol: float | None, own_tol: bool) -> float | None:
    """Give every solver model one tolerance (`--tol`, else the strictest of theirs), so a speed-up
    from fewer iterations is not mistaken for one from a smaller network; `own_tol` keeps each's."""
    if tol is not None and not tol > 0:
        from prunecli.errors import UserError

        raise UserError(f"--tol must be positive, got {tol}")
    tols = [m.tol for m in models if hasattr(m, "tol")]
    if not tols or own_tol:
        return None
    chosen = tol if tol is not None else min(tols)
    for m in models:
        if hasattr(m, "tol"):
            m.tol = chosen
    return chosen


def solver_report(model, inputs, shape, device: str, tol: float | None) -> dict[str, Any]:
    """Iterations of the model's fixed-point solver on one sample (the data's first, or random)."""
    import torch

    x = inputs[:1] if inputs is not None else torch.randn(1, *shape)
    with torch.inference_mode():
        model.to(device).eval()(x.to(device))
    return {"tol": model.tol, "max_iter": getattr(model, "max_iter", None),
            "iterations": int(model.last_iterations), "same_tolerance": tol is not None}


def data_inputs(spec: str, header, count: int):
    """Up to `count` validation samples of `spec` (inputs only), for timing on real data."""
    import torch

    from prunecli.data.for_model import data_for

    xs, n = [], 0
    for x, _ in data_for(header, spec).loader("val", min(count, 64)):
        xs.append(x)
        n += len(x)
        if n >= count:
            break
    return torch.cat(xs)[:count]


def write_flops(src, loaded, counted, sparse, latency, memory, device, runs, warmup,
                backend: str = "torch") -> str | None:
    """(Re)write `<stem>.flops.json`: counts vs. a fresh registry build, the sparse counts of a
    model with zeroed weights (`sparse`, or None), plus the measured latency."""
    import torch

    from prunecli.io.sidecars import write_sidecar
    from prunecli.models import build_model
    from prunecli.profiling.counts import count, flops_sidecar

    if src == "-":
        return None
    fresh, _, _ = build_model(loaded.header.model.name, **loaded.header.model.kwargs)
    doc = flops_sidecar(count(fresh, loaded.header.input_shape), counted, loaded.header.input_shape,
                        Path(src).name)
    measured = {"device": device, "device_name": device_name(device), "threads": torch.get_num_threads(),
                "torch": torch.__version__, "runs": runs, "warmup": warmup, "batches": latency, "memory": memory,
                **timing_protocol(device, latency[0].get("stat", "median")),
                "allocator": latency[0].get("allocator", "system"),  # profiling.allocator's mode in effect
                "backend": backend,  # export (issue 16): which runtime the latency is of
                **_prune_latency(src)}
    doc = type(doc).model_validate({**doc.model_dump(), "sparse_after": sparse, "latency": measured})  # validated
    from prunecli.errors import UserError

    try:
        path = write_sidecar(src, "flops.json", doc)
    except UserError as refused:  # a read-only folder: the measurements are still worth printing
        from prunecli.console import warn

        warn(f"{refused}; the sidecar is not updated")
        return None
    return str(path) if path else None


def _prune_latency(src: str) -> dict:
    """`latency.prune` of the existing sidecar (what latency-aware pruning measured): kept on rewrite."""
    import json

    from prunecli.io.sidecars import sidecar_path

    try:
        old = json.loads(sidecar_path(src, "flops.json").read_text()).get("latency") or {}
    except (OSError, ValueError):
        return {}
    return {"prune": old["prune"]} if "prune" in old else {}


def ratios(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """OTHER / CKPT: how many times more MACs and params OTHER has, and how much faster CKPT is."""
    other_ms = {row["batch"]: stat_ms(row) for row in other["latency"]}
    return {
        "macs": other["macs"] / max(1, base["macs"]),
        "params": other["params"] / max(1, base["params"]),
        "speedup": {str(row["batch"]): other_ms[row["batch"]] / stat_ms(row) if stat_ms(row) else None
                    for row in base["latency"]},
    }


def profile_checkpoints(checkpoint: str, compare: str | None, *, batch_sizes: list[int], runs: int,
                        warmup: int, device: str, threads: int | None, per_layer: bool, data: str | None = None,
                        tol: float | None = None, own_tol: bool = False, stat: str = "median",
                        backend: str = "torch", layer_latency: str | None = None,
                        allocator: str = "steady") -> dict[str, Any]:
    """The whole `prunecli profile` result (JSON-ready)."""
    check_options(runs, warmup, threads, checkpoint, compare)  # before the slow imports
    check_stat(stat)
    from prunecli.profiling.allocator import check_mode

    check_mode(allocator)
    import torch

    from prunecli.utils.runtime import resolve_device

    device = resolve_device(device)
    previous = torch.get_num_threads()
    if threads is not None:  # for this profile only: a caller in the same process keeps its own
        torch.set_num_threads(threads)
    try:
        results = profile_many([checkpoint] + ([compare] if compare else []), device, batch_sizes, runs, warmup,
                               per_layer, data, tol, own_tol, stat, backend, layer_latency, allocator)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    result = results[0]
    result["settings"] = {"device": device, "device_name": device_name(device), "threads": used,
                          "runs": runs, "warmup": warmup, "batch_sizes": batch_sizes, **timing_protocol(device, stat),
                          "backend": backend, "allocator": result["latency"][0].get("allocator", "system")}
    if compare is not None:
        other = results[1]
        result["compare"] = other
        result["ratios"] = ratios(result, other)
    return result


def _on(result: dict[str, Any]) -> str:
    """export (issue 16): `, onnxruntime` in the latency rows when that backend ran them."""
    backend = result["settings"].get("backend", "torch")
    return "" if backend == "torch" else f", {backend}"


def render(result: dict[str, Any]):
    """Rich tables: a summary (two columns and ratios with --compare) and optional per-layer MACs."""
    from rich.console import Group

    from prunecli.console import human, table

    other, r = result.get("compare"), result.get("ratios")
    s = result["settings"]
    stat = s.get("stat", "median")
    names = [Path(result["checkpoint"]).name] + ([Path(other["checkpoint"]).name] if other else [])
    models = [result] + ([other] if other else [])

    def row(label, values, ratio=""):
        return [label, *values, *([ratio] if r else [])]

    rows = [row("params", [human(m["params"]) for m in models], r and f"{r['params']:.2f}x"),
            row("MACs", [human(m["macs"]) for m in models], r and f"{r['macs']:.2f}x"),
            row("  conv+dense params", [human(m["params_conv_dense"]) for m in models],
                r and f"{models[1]['params_conv_dense'] / max(1, models[0]['params_conv_dense']):.2f}x"),
            row("  conv+dense MACs", [human(m["macs_conv_dense"]) for m in models],
                r and f"{models[1]['macs_conv_dense'] / max(1, models[0]['macs_conv_dense']):.2f}x")]
    if any("note" in m for m in models):  # unstructured sparsity: what a sparse kernel would do
        rows += [row("nonzero params", [human(m["nonzero_params"]) for m in models],
                     r and f"{models[1]['nonzero_params'] / max(1, models[0]['nonzero_params']):.2f}x"),
                 row("sparse MACs", [human(m["sparse_macs"]) for m in models],
                     r and f"{models[1]['sparse_macs'] / max(1, models[0]['sparse_macs']):.2f}x")]
    for i, batch in enumerate(result["settings"]["batch_sizes"]):
        speedup = r["speedup"][str(batch)] if r else None
        rows += [
            row(f"latency b={batch} (ms, {stat}{_on(result)})", [stat_ms(m["latency"][i]) for m in models],
                f"{speedup:.2f}x" if speedup else ""),
            row("  p90 (ms)", [m["latency"][i]["p90_ms"] for m in models]),
            row("  images/s", [m["latency"][i]["images_per_s"] for m in models]),
            row("  peak memory (MB)", [m["memory"][i]["total_bytes"] / 2**20 for m in models]),
        ]
    if any("solver" in m for m in models):
        rows.append(row("solver iterations (tol)", [f"{m['solver']['iterations']} ({m['solver']['tol']:.0e})"
                                                    if "solver" in m else "" for m in models]))
    title = (f"profile on {s['device']} ({s['device_name']}, {s['threads']} threads, {stat} of {s['runs']} runs"
             f" by {s.get('timer', 'perf_counter')}{', steady allocator' if s.get('allocator') == 'steady' else ''})")
    parts = [table(title, ["", *names, *(["other / this"] if r else [])], rows)]  # latency ratio = speedup
    parts += [f"[yellow]note ({Path(m['checkpoint']).name}): {m['note']}[/]" for m in models if "note" in m]
    if "layers" in result:
        parts.append(_layer_table(result, other))
    return Group(*parts)


# ---------------------------------------------------------------- timing protocol (issue 15 item 8)


def check_stat(stat: str) -> None:
    from prunecli.profiling.latency import STATS

    if stat not in STATS:
        raise UserError(f"--stat must be one of {', '.join(STATS)}, got {stat!r}")


def timing_protocol(device: str, stat: str) -> dict[str, str]:
    """The keys saying how latency was measured: the statistic and the clock (`perf_counter`, `cuda_event`)."""
    from prunecli.profiling.latency import make_timer

    return {"stat": stat, "timer": make_timer(device).name}


def stat_ms(row: dict[str, Any]) -> float:
    """A latency row's chosen statistic in ms (rows from before `--stat` hold only the median)."""
    return row[f"{row.get('stat', 'median')}_ms"]


def _layer_table(result: dict[str, Any], other: dict[str, Any] | None):
    from prunecli.console import table

    theirs = {row["name"]: row for row in (other or {}).get("layers", [])}
    batches = [str(b) for b in result.get("layer_latency", {}).get("batch_sizes", [])]  # per-layer latency
    cols = ["layer", "kind", "MACs", "params", *(["MACs (other)"] if other else []),
            *[f"ms b={b}" for b in batches]]
    rows = [[row["name"], row["kind"], row["macs"], row["params"],
             *([theirs.get(row["name"], {}).get("macs")] if other else []),
             *[row["latency_ms"].get(b) for b in batches]] for row in result["layers"]]
    return table("per layer", cols, rows)
