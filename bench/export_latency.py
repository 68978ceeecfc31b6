"""Does the exported model run faster than PyTorch? onnxruntime vs PyTorch on the same pruned models.

Each model is built and pruned to half its MACs by the real CLI, run in this process (ResNet-56:
`prune --method l1 --target-macs 0.5x` at 32x32; DeiT-Tiny and ConvNeXt-Atto: `--method isomorphic
--importance l1 --target-macs 0.5x` at 224x224, timm pretrained=False: weights do not change the
timing). The unpruned and the pruned model are each run by PyTorch and by onnxruntime (CPU provider,
the ONNX exported and verified in-process exactly as `profile --backend onnxruntime` does,
intra-op threads = torch's), and the four are timed in one interleaved run by
`prunecli.profiling.latency.measure_latency_many` (A B C D A B C D ..., medians) at batch 1 and 64.
Reported: onnxruntime / PyTorch speed (a ratio above 1: onnxruntime is faster) for the pruned
and the unpruned model, and the pruning speedup each backend delivers, beside the MAC ratio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import machine_info, parse_args, print_table, set_torch_threads, write_results
from pruned_latency import cli

MODELS = {  # model: (data, prune arguments)
    "resnet56": ("synthetic", ("--method", "l1", "--target-macs", "0.5x")),
    "timm:deit_tiny_patch16_224": ("synthetic:size=224,classes=1000,n=8,val=8",
                                   ("--method", "isomorphic", "--importance", "l1", "--target-macs", "0.5x")),
    "timm:convnext_atto": ("synthetic:size=224,classes=1000,n=8,val=8",
                           ("--method", "isomorphic", "--importance", "l1", "--target-macs", "0.5x")),
}
BATCHES = (1, 64)


def prepare(model: str, tmp: Path) -> tuple[Path, Path, dict]:
    data, prune = MODELS[model]
    stem = model.removeprefix("timm:")
    base, pruned = tmp / f"{stem}.safetensors", tmp / f"{stem}.pruned.safetensors"
    cli("train", "--model", model, "--data", data, "--epochs", "0", "--device", "cpu", "-o", str(base), "--json")
    result = cli("prune", str(base), *prune, "-o", str(pruned), "--json")
    return base, pruned, result


def time_four(base: Path, pruned: Path, warmup: int, runs: int, threads: int) -> dict[str, list[dict]]:
    """Latency rows of {torch, onnxruntime} × {unpruned, pruned}, interleaved."""
    from prunecli.export.ort import ort_model
    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.latency import measure_latency_many

    a, b = ckpt.load(base), ckpt.load(pruned)
    shape = tuple(a.header.input_shape)
    models = {"torch": a.model, "torch_pruned": b.model,
              "ort": ort_model(a.model, shape, a.header.model.name, "cpu", threads),
              "ort_pruned": ort_model(b.model, shape, b.header.model.name, "cpu", threads)}
    rows = measure_latency_many(list(models.values()), [shape] * 4, list(BATCHES), "cpu", warmup, runs)
    return dict(zip(models, rows, strict=True))


def summarise(result: dict, rows: dict[str, list[dict]]) -> dict:
    out = {k: result[k] for k in ("macs_before", "macs_after", "macs_ratio")}
    out["batches"] = {}
    for i, batch in enumerate(BATCHES):
        ms = {name: r[i]["median_ms"] for name, r in rows.items()}
        out["batches"][batch] = {**{f"{k}_ms": v for k, v in ms.items()},
                                 "ort_speed_pruned": ms["torch_pruned"] / ms["ort_pruned"],
                                 "ort_speed_unpruned": ms["torch"] / ms["ort"],
                                 "pruning_speedup_torch": ms["torch"] / ms["torch_pruned"],
                                 "pruning_speedup_ort": ms["ort"] / ms["ort_pruned"]}
    return out


def main() -> None:
    args = parse_args(__doc__)
    threads = set_torch_threads(args.threads)
    warmup, runs = (1, 3) if args.quick else (3, 10)
    summary, table = {}, []
    with tempfile.TemporaryDirectory(prefix="prunecli-bench-") as tmp:
        for model in MODELS:
            base, pruned, result = prepare(model, Path(tmp))
            summary[model] = s = summarise(result, time_four(base, pruned, warmup, runs, threads))
            for batch, t in s["batches"].items():
                table.append([model, batch, s["macs_ratio"], t["torch_pruned_ms"], t["ort_pruned_ms"],
                              t["ort_speed_pruned"], t["ort_speed_unpruned"], t["pruning_speedup_torch"],
                              t["pruning_speedup_ort"]])
    print_table(f"pruned model, onnxruntime vs PyTorch on CPU, {runs} interleaved runs after {warmup} warm-up, "
                f"{threads} threads", ["model", "batch", "MAC ratio", "torch ms", "ort ms", "ort speed (pruned)",
                                       "ort speed (unpruned)", "pruning speedup torch", "pruning speedup ort"], table)
    write_results("export_latency", {"machine": machine_info(threads), "warmup": warmup, "runs": runs,
                                      "models": summary})


if __name__ == "__main__":
    main()
