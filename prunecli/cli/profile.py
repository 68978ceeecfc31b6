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
    runs: Annotated[int, typer.Option("--runs", help="timed forward passes per batch size (the median is reported)")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed passes before timing")] = 5,
    data: Annotated[str | None, typer.Option("--data", help="time on real validation samples of this data (e.g. MRI slices) instead of random inputs")] = None,
    tol: Annotated[float | None, typer.Option(help="solver tolerance for fixed-point models (DEQ); default: the strictest of the compared models, for both")] = None,
    own_tol: Annotated[bool, typer.Option(help="keep each checkpoint's own solver tolerance instead of one for both")] = False,
    device: O.Device = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's choice)")] = None,
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    # issue 17 (report): the JSON result as a sidecar `<stem>.profile.json` for `prunecli report`
    output: Annotated[str | None, typer.Option("-o", "--output", help="also write the JSON result (what --json prints) to this file, atomically; `prunecli report` reads <stem>.profile.json beside <stem>.safetensors")] = None,
) -> None:
    """Count params and MACs, and time the forward pass of a checkpoint.

    MACs: multiply-accumulates for one sample of the input shape.
    Latency: median of --runs timed passes after --warmup untimed ones,
    random inputs, per batch size. Peak memory: weights + input + the
    activation peak of one forward pass.

    --compare measures another checkpoint the same way and adds ratios
    (other / this): MACs and params reduction, and speedup (a latency
    ratio above 1 means this checkpoint is faster).

    Rewrites the `<stem>.flops.json` sidecar beside CHECKPOINT with the
    counts and the measured latency (not for `-`).

    Examples:

      prunecli profile pruned.safetensors --compare base.safetensors

      prunecli profile pruned.safetensors --per-layer --batch-sizes 1,32,256 --device cpu --threads 4

      prunecli prune base.safetensors --method l1 --ratio 0.5 -o - | prunecli profile - --json

      prunecli profile deq_p40.safetensors --compare deq.safetensors --data phantom --batch-sizes 1

      prunecli profile ft.safetensors --batch-sizes 1 -o ft.profile.json   (the sidecar `prunecli report` reads)

    Fixed-point models (DEQ) also report their solver iterations; both models run at one
    tolerance unless --own-tol, so fewer iterations are not mistaken for a smaller network.
    """
    from prunecli.cli._output import print_result
    from prunecli.data.images import set_skip_bad_images
    from prunecli.profiling.report import parse_batch_sizes, profile_checkpoints, render

    set_skip_bad_images(skip_bad_images)
    from prunecli.io.sidecars import check_result_path, write_result  # issue 17 (report): -o sidecar

    check_result_path(output, checkpoint, "profile")
    result = profile_checkpoints(
        checkpoint, compare, batch_sizes=parse_batch_sizes(batch_sizes), runs=runs, warmup=warmup,
        device=device, threads=threads, per_layer=per_layer, data=data, tol=tol, own_tol=own_tol,
    )
    if output is not None:  # issue 17 (report)
        write_result(output, result)
    print_result(result, json, lambda: render(result))
