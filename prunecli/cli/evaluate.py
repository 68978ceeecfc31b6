"""`prunecli evaluate`: top-1/top-5 accuracy and loss of a checkpoint on a data split."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def _unknown_split(name: str) -> None:
    from prunecli.errors import UserError

    raise UserError(f"unknown split {name!r}; use train, val or test")


def evaluate(
    checkpoint: O.Ckpt,
    data: O.Data = "digits",
    split: Annotated[str, typer.Option(help="train, val (the holdout when the data spec has holdout=N, else the data set's own val/test split) or test (always the data set's own val/test split)", **O.choice("--split", "train", "val", "test", on_miss=_unknown_split))] = "val",
    batch_size: O.BatchSize = 256,
    device: O.Device = "auto",
    workers: O.Workers = 0,
    input_size: Annotated[int | None, typer.Option(help="override the model's eval input size (timm models, imagefolder)")] = None,
    interpolation: Annotated[str | None, typer.Option(help="override the resize interpolation: bicubic, bilinear, ...")] = None,
    crop_pct: Annotated[float | None, typer.Option(help="override the centre-crop fraction (e.g. 0.875)")] = None,
    amp: O.Amp = "off",  # fp32 unless asked: reported accuracy stays comparable with published numbers
    channels_last: O.ChannelsLast = False,
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    # issue 17 (report): the JSON result as a sidecar `<stem>.eval.json` for `prunecli report`
    output: Annotated[str | None, typer.Option("-o", "--output", help="also write the JSON result (what --json prints) to this file, atomically; `prunecli report` reads <stem>.eval.json beside <stem>.safetensors")] = None,
) -> None:
    """Evaluate a checkpoint: top-1, top-5 and mean cross-entropy.

    timm models are evaluated with their own preprocessing on image folders (input size,
    interpolation — bicubic for ViTs —, crop, mean/std), so ImageNet numbers compare with
    published ones; --input-size, --interpolation and --crop-pct override it.

    Under torchrun each process evaluates its share of every batch and the sums are combined:
    every sample counts once, the numbers equal one process's.

    Examples:

      prunecli evaluate ft.safetensors --data digits

      prunecli prune base.safetensors --method l1 --ratio 0.3 -o - | prunecli evaluate - --data digits --json

      prunecli evaluate ft.safetensors --data digits --split test -o ft.eval.json   (the sidecar `prunecli report` reads)
    """
    from prunecli.cli._output import print_result, table
    from prunecli.data.images import set_skip_bad_images
    from prunecli.engine import run
    from prunecli.io.sidecars import check_result_path, write_result

    set_skip_bad_images(skip_bad_images)
    check_result_path(output, checkpoint, "eval")  # issue 17 (report)
    if crop_pct is not None and not 0 < crop_pct <= 1:
        from prunecli.errors import UserError

        raise UserError(f"--crop-pct must be in (0, 1], got {crop_pct}")
    result = run.evaluate(checkpoint, data, device, batch_size, split=split, workers=workers,
                          overrides={"input_size": input_size, "interpolation": interpolation, "crop_pct": crop_pct},
                          amp=amp, channels_last=channels_last)
    if output is not None:  # issue 17 (report): the sidecar
        write_result(output, result)
    print_result(result, json, lambda: table(
        f"{result['model']} on {data} ({split})", ["top-1 %", "top-5 %", "loss", "samples"],
        [[result["top1"], result["top5"], result["loss"], result["samples"]]]))
