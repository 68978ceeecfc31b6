"""`prunecli profile`: params, MACs, measured latency and peak memory of a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def profile(
    checkpoint: O.Ckpt,
    compare: Annotated[str | None, typer.Option("--compare", help="another checkpoint to compare against (e.g. the unpruned base)")] = None,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="also list MACs and params of every layer")] = False,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="comma-separated batch sizes to time")] = "1,64",
    runs: Annotated[int, typer.Option("--runs", help="timed forward passes per batch size (their median, or --stat mean)")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed passes before timing")] = 5,
    data: Annotated[str | None, typer.Option("--data", help="time on real validation samples of this data (e.g. MRI slices) instead of random inputs")] = None,
    tol: Annotated[float | None, typer.Option(help="solver tolerance for fixed-point models (DEQ); default: the strictest of the compared models, for both")] = None,
    own_tol: Annotated[bool, typer.Option(help="keep each checkpoint's own solver tolerance instead of one for both")] = False,
    device: O.Device = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's choice)")] = None,
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    # timing protocol (issue 15 item 8): the statistic; the clock follows the device
    stat: Annotated[str, typer.Option(help="median (robust on a shared machine) or mean (Park et al.: mean of 30 DEQ / 100 other passes after 10 warm-up); on CUDA passes are timed with CUDA events", **O.choice("--stat", "median", "mean"))] = "median",
    # issue 17 (report): the JSON result as a sidecar `<stem>.profile.json` for `prunecli report`
    output: Annotated[str | None, typer.Option("-o", "--output", help="also write the JSON result (what --json prints) to this file, atomically; `prunecli report` reads <stem>.profile.json beside <stem>.safetensors")] = None,
    # export (issue 16): time the model as onnxruntime runs it (prunecli/export/ort.py)
    backend: Annotated[str, typer.Option("--backend", **O.choice("--backend", "torch", "onnxruntime"),
                                         help="what runs the timed passes: torch, or onnxruntime (the model exported to ONNX in-process and verified; CPU provider, CUDA where present; needs `pip install -e .[export]`)")] = "torch",
    # per-layer latency (issue 16, latency-aware pruning)
    layer_latency: Annotated[bool, typer.Option("--latency", help="with --per-layer: also time each layer alone at each batch size (interleaved, medians)")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="dtype of the per-layer latency (--latency)", **O.choice("--dtype", "float32", "bfloat16", "float16"))] = "float32",
    # the CPU allocator while timing (issue 16): glibc's page faults are not the model's time
    allocator: Annotated[str, typer.Option("--allocator", **O.choice("--allocator", "steady", "system"), help="CPU only: steady keeps the memory malloc hands out between passes (mallopt: no mmap, no trim), as a caching allocator (jemalloc/tcmalloc) does in deployment; system times with glibc's defaults, whose page faults vary from process to process")] = "steady",
) -> None:
    """Count params and MACs, and time the forward pass of a checkpoint.

    MACs: multiply-accumulates for one sample of the input shape.
    Latency: median (or --stat mean) of --runs timed passes after --warmup
    untimed ones, random inputs, per batch size; timed by the wall clock on
    CPU, by CUDA events on a GPU (the JSON's settings say `stat`, `timer`).
    Peak memory: weights + input + the activation peak of one forward pass.
    On the CPU, memory is kept between timed passes (--allocator steady): with
    glibc's defaults a large batch pays page faults on every pass, a cost of
    the allocator's history (up to a third of the time) rather than the model.

    --compare measures another checkpoint the same way and adds ratios
    (other / this): MACs and params reduction, and speedup, the time ratio
    other / this of the chosen statistic (above 1: this checkpoint is faster;
    1.52 means 1.52×, not "52% faster").

    --per-layer --latency times each layer alone (its own weights, a random input of
    the shape it sees in the model, --dtype) next to its MACs: where the time goes.

    Rewrites the `<stem>.flops.json` sidecar beside CHECKPOINT with the
    counts and the measured latency (not for `-`).

    Examples:

      prunecli profile pruned.safetensors --compare base.safetensors

      prunecli profile pruned.safetensors --per-layer --batch-sizes 1,32,256 --device cpu --threads 4

      prunecli prune base.safetensors --method l1 --ratio 0.5 -o - | prunecli profile - --json

      prunecli profile deq_p40.safetensors --compare deq.safetensors --data phantom --batch-sizes 1

      prunecli profile varnet_p.safetensors --compare varnet.safetensors --batch-sizes 1 --stat mean --runs 100 --warmup 10 --device cuda
      prunecli profile ft.safetensors --batch-sizes 1 -o ft.profile.json   (the sidecar `prunecli report` reads)
    --backend onnxruntime times the same protocol through onnxruntime (the deployment's speed);
    MACs, params and memory stay PyTorch's.

    Fixed-point models (DEQ) also report their solver iterations; both models run at one
    tolerance unless --own-tol, so fewer iterations are not mistaken for a smaller network.
    """
    from prunecli.cli._output import print_result
    from prunecli.data.images import set_skip_bad_images
    from prunecli.profiling.report import parse_batch_sizes, profile_checkpoints, render

    set_skip_bad_images(skip_bad_images)
    if layer_latency and not per_layer:  # per-layer latency
        from prunecli.errors import UserError

        raise UserError("--latency times layers: give it with --per-layer")
    from prunecli.io.sidecars import check_result_path, write_result  # issue 17 (report): -o sidecar

    check_result_path(output, checkpoint, "profile")
    result = profile_checkpoints(
        checkpoint, compare, batch_sizes=parse_batch_sizes(batch_sizes), runs=runs, warmup=warmup,
        device=device, threads=threads, per_layer=per_layer, data=data, tol=tol, own_tol=own_tol,
        stat=stat,
        backend=backend,  # export (issue 16)
        layer_latency=dtype if layer_latency else None,  # per-layer latency (issue 16)
        allocator=allocator,  # the CPU allocator while timing (issue 16)
    )
    if output is not None:  # issue 17 (report)
        write_result(output, result)
    print_result(result, json, lambda: render(result))
