"""`prunecli train`: train a registry model from scratch (or from `--init` weights)."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def train(
    ctx: typer.Context,
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
    mu: Annotated[float, typer.Option(min=0.0, help="group-sparsity strength μ: Σ μ_g‖W_g‖₂ over output filters (--optimizer proxsgd; GSparsity 0.02–0.1)", rich_help_panel=O.SPARSITY)] = 0.0,
    group_sparsity: Annotated[str, typer.Option(help="the groups μ acts on: filters (each output filter of a conv)", rich_help_panel=O.SPARSITY, **O.choice("--group-sparsity", "filters"))] = "filters",
    normalization: Annotated[str, typer.Option(help="μ per filter: div μ/√(C_in·k²) (GSparsity), mul μ·√(C_in·k²), none", rich_help_panel=O.SPARSITY, **O.choice("--normalization", "div", "mul", "none"))] = "div",
    prunable: Annotated[str, typer.Option(help="regularised convs: conv12 (conv1/conv2 in residual blocks, GSparsity) or all", rich_help_panel=O.SPARSITY, **O.choice("--prunable", "conv12", "all"))] = "conv12",
    mu_scale: Annotated[list[str] | None, typer.Option(help="GLOB=FACTOR: multiply μ for matching layers (repeatable; GSparsity: 'layer2.*=2' 'layer3.*=2')", rich_help_panel=O.SPARSITY)] = None,
    prox_snap: Annotated[bool, typer.Option(help="changes the algorithm: set a filter whose prox output is 0 to exactly 0 at once (ours: zero groups are exact zeros, not values below 1e-6, and BN sees them at once). Default: the reference's convex step x+ε(x̂−x), which only shrinks such a filter by 1−ε per step", rich_help_panel=O.SPARSITY)] = False,
    loss: Annotated[str, typer.Option(help="reconstruction models: auto (SmoothL1 for DEQ, 1−SSIM for VarNets), smoothl1, ssim, l1, mse", rich_help_panel=O.OPTIM, **O.choice("--loss", "auto", "smoothl1", "ssim", "l1", "mse"))] = "auto",
    bn_recalibrate: Annotated[int, typer.Option(min=0, help="changes the algorithm: after each epoch recompute BatchNorm statistics on N train batches (ours, e.g. 50 with --prox-snap, whose abrupt zeros leave the running statistics stale). Default 0: the reference keeps the running statistics", rich_help_panel=O.SPARSITY)] = 0,
    weight_decay_mode: Annotated[str, typer.Option(help="all: --weight-decay on every parameter (PyTorch); keras: Keras l2(λ) with λ = --weight-decay, a gradient 2λw on the kernels only (no biases or BN; Li et al. 2023's Keras models name theirs)", rich_help_panel=O.OPTIM, **O.choice("--weight-decay-mode", "all", "keras"))] = "all",
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    nesterov: O.Nesterov = True,
    # augmentation and regularisation from timm (issue 13)
    randaugment: O.RandAugment = None,
    reprob: O.Reprob = 0.0,
    mixup: O.Mixup = 0.0,
    cutmix: O.Cutmix = 0.0,
    drop_path: O.DropPath = 0.0,
    dropout: O.Dropout = 0.0,
    sync_bn: O.SyncBn = True,
    repeated_aug: O.RepeatedAug = False,
    # speed and averaging (engine/amp.py)
    amp: O.Amp = "auto",
    channels_last: O.ChannelsLast = False,
    compile: O.Compile = False,
    grad_accum: O.GradAccum = 1,
    ema: O.Ema = 0.0,
    select: O.Select = "last",
    tensorboard: O.TensorBoard = None,  # issue 17 (report)
) -> None:
    """Train a model and write a self-describing checkpoint.

    A checkpoint is written after every epoch, with the optimizer state in
    `<stem>.state.pt`, so `--resume` continues an interrupted run exactly.

    Examples:

      prunecli train --model resnet20 --data digits --epochs 10 -o base.safetensors

      prunecli train --model resnet56 --data cifar10:~/data/cifar-10-batches-py --epochs 160 --schedule step --step-size 80 -o r56.safetensors

      prunecli train --init r50.safetensors --data imagefolder:DIR --optimizer proxsgd --lr 1e-3 --mu 0.05 --mu-scale 'layer2.*=2' --mu-scale 'layer3.*=2' --schedule step --step-size 30 --epochs 90 -o search.safetensors

    Under torchrun (`torchrun --nproc_per_node N -m prunecli train ...`) the run is
    DistributedDataParallel: --batch-size is the global batch, rank 0 writes.

    With --optimizer proxsgd (GSparsity's search; Yang et al. ICLR 2020) each epoch also reports
    the fraction of zero filter groups and the MACs that `prune --method zero-groups` would leave.
    Its defaults are the reference algorithm (the convex step, BN statistics as training leaves
    them); `--prox-snap --bn-recalibrate 50` is ours, a different algorithm (recipes/gsparsity
    MODE=improved).
    """
    from prunecli.cli._output import print_result, table
    from prunecli.engine import run
    from prunecli.engine.config import make_config, parse_milestones, parse_scales
    from prunecli.errors import UserError

    if not output:
        raise UserError("missing -o/--output (a .safetensors path, or - for stdout)")
    from prunecli.data.images import set_skip_bad_images
    from prunecli.io.atomic import check_output

    check_output(output, init)
    set_skip_bad_images(skip_bad_images)
    if not model and not init:
        raise UserError("missing --model (see `prunecli ls models`) or --init CKPT")
    if mu > 0 and optimizer != "proxsgd":
        raise UserError("--mu needs --optimizer proxsgd (the proximal step is what makes groups zero)")
    if group_sparsity != "filters":
        raise UserError(f"--group-sparsity {group_sparsity!r}: only filters is supported")
    cfg = make_config(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay, schedule=schedule, step_size=step_size, gamma=gamma,
                      milestones=parse_milestones(milestones), warmup_epochs=warmup_epochs,
                      label_smoothing=label_smoothing, seed=seed, workers=workers, mu=mu,
                      normalization=normalization, prunable=prunable, mu_scale=parse_scales(mu_scale or []),
                      prox_snap=prox_snap, loss=loss,
                      bn_recalibrate=bn_recalibrate,
                      nesterov=nesterov, weight_decay_mode=weight_decay_mode,
                      randaugment=randaugment, reprob=reprob, mixup=mixup, cutmix=cutmix, drop_path=drop_path,
                      dropout=dropout,
                      sync_bn=sync_bn, repeated_aug=repeated_aug,
                      amp=amp, channels_last=channels_last, compile=compile, grad_accum=grad_accum, ema=ema,
                      select=select)
    from prunecli.engine import tblog

    with tblog.writing(tensorboard):  # --tensorboard (issue 17)
        metrics = run.train(model, data, output, cfg, device, init=init, resume=resume, stop_after=stop_after,
                            options={"model": model or None, "data": data, **cfg.model_dump()}, given=_given(ctx))
    if output != "-":
        print_result({"output": output, **metrics}, json, lambda: table(
            f"trained → {output}", ["metric", "value"], [[k, v] for k, v in metrics.items()]))


def _given(ctx: typer.Context) -> set[str]:
    """The optimisation options set on the command line; reconstruction models get task defaults
    for the others (prunecli/engine/defaults.py)."""
    from prunecli.cli._methods import given

    return {name for name in ("optimizer", "lr", "weight_decay", "schedule") if given(ctx, name)}
