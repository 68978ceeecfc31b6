"""`prunecli finetune`: recover accuracy after pruning, optionally distilling from a teacher."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def finetune(
    ctx: typer.Context,
    checkpoint: O.Ckpt,
    data: O.Data = "digits",
    output: O.Out = "",
    epochs: O.Epochs = 10,
    batch_size: O.BatchSize = 128,
    lr: O.Lr = 0.01,
    optimizer: O.Optimizer = "sgd",
    momentum: O.Momentum = 0.9,
    weight_decay: O.WeightDecay = 5e-4,
    schedule: O.Schedule = "cosine",
    step_size: O.StepSize = 30,
    milestones: O.Milestones = None,
    gamma: O.Gamma = 0.1,
    warmup_epochs: O.Warmup = 0,
    label_smoothing: O.LabelSmoothing = 0.0,
    teacher: Annotated[str | None, typer.Option(help="teacher checkpoint for knowledge distillation", rich_help_panel=O.DISTILL)] = None,
    distill: Annotated[str, typer.Option(help="soft: (1-α)·CE + α·T²·KL; hard: (1-α)·CE + α·CE(teacher argmax), DeiT's dist token trained on the teacher", rich_help_panel=O.DISTILL, **O.choice("--distill", "soft", "hard"))] = "soft",
    kd_alpha: Annotated[float, typer.Option(help="distillation weight α", rich_help_panel=O.DISTILL)] = 0.5,
    kd_temperature: Annotated[float, typer.Option(help="KD temperature T", rich_help_panel=O.DISTILL)] = 4.0,
    kd_label_smoothing: Annotated[bool, typer.Option(help="--distill hard: apply --label-smoothing to CE(dist, teacher argmax) too, as the Isomorphic-Pruning reference's train.py (recipes/isomorphic); default: DeiT's DistillationLoss, the label term only", rich_help_panel=O.DISTILL)] = False,
    strategy: Annotated[str, typer.Option(help="reconstruction: supervised (ground truth), distill (the --teacher's reconstructions, no ground truth) or selfsup (measurements only: ‖Ax̂−y‖₁ + rotation equivariance)", rich_help_panel=O.DISTILL, **O.choice("--strategy", "supervised", "distill", "selfsup"))] = "supervised",
    loss: Annotated[str, typer.Option(help="reconstruction loss: auto (SmoothL1 for DEQ, 1−SSIM for VarNets), smoothl1, ssim, l1, mse", rich_help_panel=O.OPTIM, **O.choice("--loss", "auto", "smoothl1", "ssim", "l1", "mse"))] = "auto",
    select: O.Select = "last",
    seed: O.Seed = 0,
    device: O.Device = "auto",
    workers: O.Workers = 0,
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
    tensorboard: O.TensorBoard = None,  # issue 17 (report)
) -> None:
    """Fine-tune a (pruned) checkpoint; its pruned structure is kept.

    With --teacher, the loss is (1-α)·CE + α·T²·KL(teacher/T ‖ student/T) (Hinton et al. 2015),
    or with --distill hard (Touvron et al. 2021, DeiT) (1-α)·CE + α·CE(teacher's argmax); a DeiT
    with a distillation token trains its dist head on the teacher and its cls head on the labels.

    Examples:

      prunecli finetune pruned.safetensors --data digits --epochs 5 -o ft.safetensors

      prunecli finetune pruned.safetensors --data cifar10:DIR --teacher base.safetensors --kd-alpha 0.7 -o ft.safetensors

      prunecli finetune deq_p40.safetensors --data fastmri:DIR --strategy selfsup --optimizer adam --lr 1e-5 --select val_dc -o deq_ss.safetensors

    Under torchrun (`torchrun --nproc_per_node N -m prunecli finetune ...`) the run is
    DistributedDataParallel: --batch-size is the global batch, rank 0 writes.

    Reconstruction models (MBDL, Park et al.): --strategy supervised | distill (with --teacher)
    | selfsup; distill and selfsup never read the ground truth (background from the coil maps,
    selection by --select val_dc).
    """
    from prunecli.cli._output import print_result, table
    from prunecli.engine import run
    from prunecli.engine.config import make_config, parse_milestones
    from prunecli.errors import UserError

    if not output:
        raise UserError("missing -o/--output (a .safetensors path, or - for stdout)")
    from prunecli.data.images import set_skip_bad_images
    from prunecli.io.atomic import check_output

    check_output(output, checkpoint, teacher)
    set_skip_bad_images(skip_bad_images)
    cfg = make_config(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, step_size=step_size, gamma=gamma,
        milestones=parse_milestones(milestones),
        warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, seed=seed, workers=workers,
        kd_alpha=kd_alpha, kd_temperature=kd_temperature, distill=distill, kd_label_smoothing=kd_label_smoothing, strategy=strategy, loss=loss,
        select=select, nesterov=nesterov, weight_decay_mode=weight_decay_mode,
        randaugment=randaugment, reprob=reprob, mixup=mixup, cutmix=cutmix, drop_path=drop_path, dropout=dropout,
        sync_bn=sync_bn, repeated_aug=repeated_aug,
        amp=amp, channels_last=channels_last, compile=compile, grad_accum=grad_accum, ema=ema,
    )
    from prunecli.engine import tblog

    with tblog.writing(tensorboard):  # --tensorboard (issue 17)
        metrics = run.finetune(checkpoint, data, output, cfg, device, teacher=teacher,
                               options={"data": data, "teacher": teacher, **cfg.model_dump()}, given=_given(ctx))
    if output != "-":
        print_result({"output": output, **metrics}, json, lambda: table(
            f"fine-tuned → {output}", ["metric", "value"], [[k, v] for k, v in metrics.items()]))


def _given(ctx: typer.Context) -> set[str]:
    """The optimisation options set on the command line; reconstruction models get task defaults
    for the others (prunecli/engine/defaults.py)."""
    from prunecli.cli._methods import given

    return {name for name in ("optimizer", "lr", "weight_decay", "schedule") if given(ctx, name)}
