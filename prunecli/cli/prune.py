"""`prunecli prune`: structured pruning of a checkpoint into a physically smaller one."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def prune(
    checkpoint: O.Ckpt,
    method: Annotated[str, typer.Option("--method", help="l1, l2, taylor, random, isomorphic, similarity, zero-groups, l1-unstructured (`prunecli ls methods`)")] = "l1",
    output: O.Out = "",
    ratio: Annotated[float | None, typer.Option(help="channel pruning ratio in (0,1) (Torch-Pruning's pruning_ratio)")] = None,
    target_macs: Annotated[str | None, typer.Option(help="MAC budget: 2.5G, 300M, or a factor of the model's MACs (0.5x); the ratio is searched")] = None,
    global_pruning: Annotated[bool, typer.Option("--global/--local", help="rank channels across layers (global) or within each layer (local)")] = False,
    ignore: Annotated[list[str] | None, typer.Option(help="layer name or glob to leave unpruned (repeatable); the classifier is always kept")] = None,
    round_to: Annotated[int | None, typer.Option(min=1, help="keep channel counts multiples of N (e.g. 8 for fast kernels)")] = None,
    max_ratio: Annotated[float, typer.Option(help="most any one layer may lose (global pruning, MAC search)")] = 0.9,
    importance: Annotated[str, typer.Option(help="criterion for --method isomorphic: taylor, l1, l2, random")] = "taylor",
    head_ratio: Annotated[float, typer.Option(help="fraction of attention heads to remove, ranked across layers (ViTs)")] = 0.0,
    head_dim_ratio: Annotated[float | None, typer.Option(help="pruning ratio of attention head dims, their own scope (ViTs)")] = None,
    remove_blocks: Annotated[int, typer.Option(min=0, help="after width pruning, replace the N blocks matching --blocks with the lowest Taylor scores by identities (ConvNeXt-T-4.2G: 18)")] = 0,
    blocks: Annotated[str | None, typer.Option(help="glob of the removable blocks for --remove-blocks, e.g. 'stages.2.blocks.*' (timm ConvNeXt)")] = None,
    threshold: Annotated[float | None, typer.Option(help="similarity: τ in (0,1), filters joined by an edge when mean similarity ≥ τ; zero-groups: filter-norm threshold, default the paper's 1e-6")] = None,
    samples: Annotated[int, typer.Option(min=1, help="training images whose feature maps are hashed, a random draw seeded by --seed (similarity)")] = 100,
    reuse: Annotated[str | None, typer.Option(help="an `analyze --method similarity` report of this checkpoint: skip the feature maps")] = None,
    sparsity: Annotated[float | None, typer.Option(help="fraction of the prunable weights to zero (l1-unstructured)")] = None,
    schedule: Annotated[str, typer.Option(help="oneshot, iterative (cumulative sparsity += --step, fine-tune each) or layerwise (one layer/block at a time) (l1-unstructured)")] = "oneshot",
    step: Annotated[float, typer.Option(help="iterative: cumulative sparsity added per step")] = 0.1,
    unit: Annotated[str, typer.Option(help="layerwise: layer (each Conv/Linear) or block (first two name parts, e.g. features.denseblock1)")] = "layer",
    include_bn: Annotated[bool, typer.Option(help="also zero BatchNorm weights γ (the MTP report's DenseNet)")] = False,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="fine-tuning epochs after each step (l1-unstructured)")] = 10,
    total_finetune_epochs: Annotated[int | None, typer.Option(min=0, help="one epoch budget spread over all steps (equal-budget comparisons); replaces --finetune-epochs")] = None,
    snapshots: Annotated[str | None, typer.Option(help="folder: write a checkpoint with sidecars after every step")] = None,
    lr: Annotated[float, typer.Option(help="fine-tuning learning rate between steps (l1-unstructured)")] = 1e-3,
    optimizer: O.Optimizer = "sgd",
    momentum: O.Momentum = 0.9,
    weight_decay: O.WeightDecay = 5e-4,
    lr_schedule: Annotated[str, typer.Option(help="fine-tuning LR schedule within each step: constant, cosine or step")] = "constant",
    device: O.Device = "auto",
    data: Annotated[str | None, typer.Option("--data", "--calib-data", help="data for methods that look at it: calibration batches (taylor), feature maps (similarity), fine-tuning (l1-unstructured)")] = None,
    calib_batches: Annotated[int, typer.Option(min=1, help="calibration batches (taylor): N × --batch-size training images drawn at random (--seed), eval transform, model in eval mode")] = 8,
    batch_size: O.BatchSize = 64,
    seed: O.Seed = 0,
    json: O.Json = False,
    skip_bad_images: O.SkipBadImages = False,
    nesterov: O.Nesterov = True,
    shared_optimizer: Annotated[bool | None, typer.Option("--shared-optimizer/--fresh-optimizer", help="l1-unstructured: one SGD (momentum buffers and all) across the steps' fine-tuning, or a new one per step (default: as the MTP report's code: shared for layerwise, fresh for oneshot/iterative)", show_default=False)] = None,
    sync_bn: O.SyncBn = True,
    fold: Annotated[str | None, typer.Option(help="zero-groups: what happens to the constant a zero filter still outputs after BatchNorm: reference (default; the paper's compression: dropped, and a bottleneck whose conv1 or conv2 lost every filter loses its residual branch) or exact-1x1 (ours: folded into the consumer's bias / next BN, exact for 1×1 and Linear consumers, approximate at the borders of padded k×k convs)")] = None,
    selection: Annotated[str, typer.Option(help="similarity tie-breaks: reference (the paper's code exactly: Python set visiting order, igraph edge weights) or strength (ours: ascending order, full weighted degree)")] = "reference",
    timeout: Annotated[float, typer.Option(help="seconds allowed for building the dependency graph and pruning together (structured methods; each MAC-search trial counts); past it: one error line, nothing written. 0: no limit")] = 600.0,
    # augmentation and regularisation from timm for l1-unstructured's fine-tuning (issue 13)
    randaugment: O.RandAugment = None,
    reprob: O.Reprob = 0.0,
    mixup: O.Mixup = 0.0,
    cutmix: O.Cutmix = 0.0,
    drop_path: O.DropPath = 0.0,
    dropout: O.Dropout = 0.0,
    # speed (engine/amp.py): l1-unstructured's fine-tuning between steps
    amp: O.Amp = "off",  # fp32 unless asked: the MTP report's numbers stay reproducible
    channels_last: O.ChannelsLast = False,
    grad_accum: O.GradAccum = 1,
) -> None:
    """Remove channels (filters) with Torch-Pruning's dependency graph, so residual and
    concat couplings stay consistent and the model is really smaller and faster.

    Writes the pruned checkpoint plus `<stem>.masks.json` (kept/removed channels per layer)
    and `<stem>.flops.json` (MACs and params before/after, per layer).

    Examples:

      prunecli prune base.safetensors --method l1 --target-macs 0.5x -o half.safetensors

      prunecli prune r56.safetensors --method taylor --data cifar10:DIR --ratio 0.4 --global -o p.safetensors

      prunecli prune deit.safetensors --method isomorphic --importance taylor --target-macs 4.2G --calib-data imagefolder:DIR --calib-batches 50 -o deit_4.2G.safetensors

      prunecli prune convnext_base.safetensors --method isomorphic --target-macs 4.2G --remove-blocks 18 --blocks 'stages.2.blocks.*' --calib-data imagefolder:DIR -o convnext_4.2G.safetensors

      prunecli prune base.safetensors --method similarity --threshold 0.8 --samples 50 --data cifar10:DIR -o p.safetensors

      prunecli prune vgg.safetensors --method l1-unstructured --sparsity 0.8 --schedule iterative --data cifar100:DIR --finetune-epochs 10 --snapshots steps/ -o p.safetensors

      prunecli prune search.safetensors --method zero-groups -o compact.safetensors   # --threshold 1e-6 --fold reference

      prunecli prune search.safetensors --method zero-groups --fold exact-1x1 -o compact.safetensors

      prunecli prune - --method l2 --ratio 0.3 -o - < a.safetensors | prunecli evaluate - --data digits
    """
    from prunecli.cli._output import print_result, table
    from prunecli.errors import UserError

    if not output:
        raise UserError("missing -o/--output (a .safetensors path, or - for stdout)")
    from prunecli.data.images import set_skip_bad_images
    from prunecli.io.atomic import check_output

    check_output(output, checkpoint, reuse)
    set_skip_bad_images(skip_bad_images)
    from prunecli.methods import get_method

    threshold, fold = _zero_groups_options(method, threshold, fold)
    if get_method(method).kind == "unstructured":  # fine-tunes: runs on every torchrun rank (DDP)
        return _unstructured(**{k: v for k, v in locals().items() if k in _UNSTRUCTURED})
    if randaugment or reprob or mixup or cutmix or drop_path or dropout:
        raise UserError("--randaugment/--reprob/--mixup/--cutmix/--drop-path/--dropout are for the fine-tuning "
                        "of --method l1-unstructured")
    if sparsity is not None:
        raise UserError(f"--sparsity is for unstructured methods (l1-unstructured); --method {method} takes --ratio")
    from prunecli.engine import dist

    if not dist.is_main():  # one-shot: rank 0 prunes, the other torchrun ranks have nothing to do
        return
    chosen = get_method(method, kind="structured")
    if selection not in ("reference", "strength"):
        raise UserError(f"--selection must be reference or strength, got {selection!r}")
    if chosen.decide is not None:
        _check_decided(method, ratio, target_macs, threshold, data or reuse or not chosen.decide_needs_data)
    elif (ratio is None) == (target_macs is None):
        raise UserError("give exactly one of --ratio or --target-macs")
    if ratio is not None and not 0 < ratio < 1:
        raise UserError(f"--ratio must be in (0, 1), got {ratio}")
    if not 0 < max_ratio < 1:
        raise UserError(f"--max-ratio must be in (0, 1), got {max_ratio}")
    if not 0 <= head_ratio < 1 or (head_dim_ratio is not None and not 0 <= head_dim_ratio < 1):
        raise UserError("--head-ratio and --head-dim-ratio must be in [0, 1)")
    if remove_blocks and not blocks:
        raise UserError("--remove-blocks needs --blocks GLOB naming the removable blocks, e.g. 'stages.2.blocks.*'")
    from prunecli.pruning.run import run_prune
    from prunecli.pruning.structured import PrunePlan

    plan = PrunePlan(ratio=ratio, target_macs=target_macs, global_pruning=global_pruning, ignore=ignore or [],
                     round_to=round_to, max_ratio=max_ratio, seed=seed, head_ratio=head_ratio,
                     head_dim_ratio=head_dim_ratio, remove_blocks=remove_blocks, blocks=blocks)
    options = {"ratio": ratio, "target_macs": target_macs, "global": global_pruning, "ignore": ignore or [],
               "round_to": round_to, "max_ratio": max_ratio, "data": data, "calib_batches": calib_batches,
               "seed": seed, "threshold": threshold, "samples": samples, "reuse": reuse, "importance": importance,
               "head_ratio": head_ratio, "head_dim_ratio": head_dim_ratio, "remove_blocks": remove_blocks,
               "blocks": blocks, "selection": selection}
    if fold is not None:
        options["fold"] = fold
    if timeout < 0:
        raise UserError(f"--timeout must be ≥ 0 seconds (0: no limit), got {timeout}")
    from prunecli.pruning.deadline import time_limit

    try:
        with time_limit(timeout):
            result = run_prune(checkpoint, output, method, plan, data=data, calib_batches=calib_batches,
                               batch_size=batch_size, options=options)
    except UserError as error:  # a refusal: point at the pre-flight check that explains the model
        if error.hint is None and "--ignore" in str(error) and checkpoint != "-":
            error.hint = f"`prunecli doctor {checkpoint}` lists its groups, protected layers and refusals in seconds"
        raise
    if output != "-":
        print_result(result, json, lambda: table(f"pruned → {output}", ["", "value"],
                                                 [[k, v] for k, v in result.items()]))


def _check_decided(method: str, ratio, target_macs, threshold, has_input) -> None:
    """Methods that pick channels themselves take --threshold (and --data or --reuse if they look at data)."""
    from prunecli.errors import UserError

    if ratio is not None or target_macs is not None:
        raise UserError(f"--method {method} sets no ratio: τ decides (use --threshold, not --ratio/--target-macs)")
    if threshold is None or not 0 < threshold < 1:
        raise UserError(f"--method {method} needs --threshold in (0, 1), got {threshold}")
    if not has_input:
        raise UserError(f"--method {method} needs --data SPEC (feature maps) or --reuse REPORT")


def _zero_groups_options(method: str, threshold, fold) -> tuple:
    """zero-groups defaults: the paper's threshold 1e-6 and its compression (`--fold reference`);
    similarity keeps --threshold required, and only zero-groups takes --fold."""
    from prunecli.errors import UserError

    if method != "zero-groups":
        if fold is not None:
            raise UserError(f"--fold is for --method zero-groups, not {method}")
        return threshold, fold
    return (1e-6 if threshold is None else threshold), (fold or "reference")


_UNSTRUCTURED = ("checkpoint", "method", "output", "sparsity", "schedule", "step", "unit", "include_bn",
                 "finetune_epochs", "total_finetune_epochs", "snapshots", "lr", "optimizer", "momentum",
                 "weight_decay", "lr_schedule", "device", "data", "batch_size", "seed", "ignore", "json",
                 "nesterov", "shared_optimizer", "sync_bn", "amp", "channels_last", "grad_accum",
                 "randaugment", "reprob", "mixup", "cutmix", "drop_path", "dropout")


def _unstructured(checkpoint, method, output, sparsity, schedule, step, unit, include_bn, finetune_epochs,
                  total_finetune_epochs, snapshots, lr, optimizer, momentum, weight_decay, lr_schedule, device,
                  data, batch_size, seed, ignore, json, nesterov, shared_optimizer, sync_bn, amp, channels_last,
                  grad_accum, randaugment, reprob, mixup, cutmix, drop_path, dropout) -> None:
    """Unstructured pruning: weights become zeros by a schedule, fine-tuned between steps."""
    from prunecli.cli._output import print_result, table
    from prunecli.engine.config import make_config
    from prunecli.errors import UserError

    if sparsity is None or not 0 < sparsity < 1:
        raise UserError(f"--method {method} needs --sparsity in (0, 1), got {sparsity}")
    if not 0 < step < 1:
        raise UserError(f"--step must be in (0, 1), got {step}")
    from prunecli.pruning.run import run_unstructured
    from prunecli.pruning.unstructured import SparsePlan

    plan = SparsePlan(sparsity=sparsity, schedule=schedule, step=step, unit=unit, include_bn=include_bn,
                      ignore=ignore or [], finetune_epochs=finetune_epochs,
                      total_finetune_epochs=total_finetune_epochs)
    from prunecli.engine.amp import check_accum, resolve_amp
    from prunecli.utils.runtime import resolve_device

    cfg = make_config(epochs=0, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay, schedule=lr_schedule, seed=seed, nesterov=nesterov,
                      sync_bn=sync_bn, randaugment=randaugment, reprob=reprob, mixup=mixup, cutmix=cutmix,
                      drop_path=drop_path, dropout=dropout, amp=amp, channels_last=channels_last,
                      grad_accum=grad_accum)
    cfg = cfg.model_copy(update={"amp": resolve_amp(cfg.amp, resolve_device(device))})
    check_accum(cfg.batch_size, cfg.grad_accum)
    shared = schedule == "layerwise" if shared_optimizer is None else shared_optimizer  # the report's code
    options = {"sparsity": sparsity, "schedule": schedule, "step": step, "unit": unit, "include_bn": include_bn,
               "finetune_epochs": finetune_epochs, "total_finetune_epochs": total_finetune_epochs,
               "ignore": ignore or [], "data": data, "seed": seed, **cfg.model_dump(exclude={"epochs"}),
               "shared_optimizer": shared}
    result = run_unstructured(checkpoint, output, method, plan, data=data, cfg=cfg, device=device,
                              snapshots=snapshots, options=options, shared_optimizer=shared)
    if output != "-":
        print_result(result, json, lambda: table(f"pruned → {output}", ["", "value"],
                                                 [[k, v] for k, v in result.items()]))
