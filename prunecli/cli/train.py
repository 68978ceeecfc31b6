"""`prunecli train`: train a registry model from scratch (or from `--init` weights)."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def train(
    model: Annotated[str, typer.Option("--model", "-m", help="registry name (`prunecli ls models`) or timm:NAME")] = "",
    data: O.Data = "digits",
    output: O.Out = "",
    epochs: O.Epochs = 30,
    batch_size: O.BatchSize = 128,
    lr: O.Lr = 0.1,
    optimizer: O.Optimizer = "sgd",
    momentum: O.Momentum = 0.9,
    weight_decay: O.WeightDecay = 5e-4,
    schedule: O.Schedule = "cosine",
    step_size: O.StepSize = 30,
    milestones: O.Milestones = None,
    gamma: O.Gamma = 0.1,
    warmup_epochs: O.Warmup = 0,
    label_smoothing: O.LabelSmoothing = 0.0,
    seed: O.Seed = 0,
    device: O.Device = "auto",
    workers: O.Workers = 0,
    init: Annotated[str | None, typer.Option(help="start from this checkpoint's weights instead of --model")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from OUTPUT and its .state.pt")] = False,
    stop_after: Annotated[int | None, typer.Option(help="stop after N epochs in this run (job time limits); continue with --resume")] = None,
    json: O.Json = False,
) -> None:
    """Train a model and write a self-describing checkpoint.

    A checkpoint is written after every epoch, with the optimizer state in
    `<stem>.state.pt`, so `--resume` continues an interrupted run exactly.

    Examples:

      prunecli train --model resnet20 --data digits --epochs 10 -o base.safetensors

      prunecli train --model resnet56 --data cifar10:~/data/cifar-10-batches-py --epochs 160 --schedule step --step-size 80 -o r56.safetensors
    """
    from prunecli.cli._output import print_result, table
    from prunecli.engine import run
    from prunecli.engine.config import make_config, parse_milestones
    from prunecli.errors import UserError

    if not output:
        raise UserError("missing -o/--output (a .safetensors path, or - for stdout)")
    if not model and not init:
        raise UserError("missing --model (see `prunecli ls models`) or --init CKPT")
    cfg = make_config(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                  weight_decay=weight_decay, schedule=schedule, step_size=step_size, gamma=gamma,
        milestones=parse_milestones(milestones),
                      warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, seed=seed, workers=workers)
    metrics = run.train(model, data, output, cfg, device, init=init, resume=resume, stop_after=stop_after,
                        options={"model": model or None, "data": data, **cfg.model_dump()})
    if output != "-":
        print_result({"output": output, **metrics}, json, lambda: table(
            f"trained → {output}", ["metric", "value"], [[k, v] for k, v in metrics.items()]))

