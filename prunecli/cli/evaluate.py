"""`prunecli evaluate`: top-1/top-5 accuracy and loss of a checkpoint on a data split."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def evaluate(
    checkpoint: O.Ckpt,
    data: O.Data = "digits",
    split: Annotated[str, typer.Option(help="train or val")] = "val",
    batch_size: O.BatchSize = 256,
    device: O.Device = "auto",
    workers: O.Workers = 0,
    json: O.Json = False,
) -> None:
    """Evaluate a checkpoint: top-1, top-5 and mean cross-entropy.

    Examples:

      prunecli evaluate ft.safetensors --data digits

      prunecli prune base.safetensors --method l1 --ratio 0.3 -o - | prunecli evaluate - --data digits --json
    """
    from prunecli.cli._output import print_result, table
    from prunecli.engine import run

    result = run.evaluate(checkpoint, data, device, batch_size, split=split, workers=workers)
    print_result(result, json, lambda: table(
        f"{result['model']} on {data} ({split})", ["top-1 %", "top-5 %", "loss", "samples"],
        [[result["top1"], result["top5"], result["loss"], result["samples"]]]))
