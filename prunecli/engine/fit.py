"""A training run: epochs of train + validate, a checkpoint after every epoch, and resume.

The optimizer, scheduler, epoch and RNG state go to `<stem>.state.pt` beside the output
(plain tensors and numbers, loaded with `weights_only=True`); the weights live in the
output checkpoint itself, unless it holds other weights than the raw ones (`--ema`: the
EMA; `--select best|val_dc`: the selected epoch's): then the raw weights, the EMA, the fp16
loss scale and the best epoch so far are in the state too. `--resume` reloads both and
continues at the next epoch; the loaders are seeded per epoch, so the result equals an
uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from prunecli.console import err, progress
from prunecli.engine import dist, tblog
from prunecli.engine.amp import check_accum, compile_errors, compile_model, prepare, resolve_amp
from prunecli.engine.augment import cross_entropy
from prunecli.engine.config import TrainConfig
from prunecli.engine.loop import evaluate, hard_distill_loss, kd_loss, recalibrate_bn, train_one_epoch
from prunecli.engine.optim import make_optimizer, make_scheduler
from prunecli.engine.select import Selection, check_select, weights_in
from prunecli.errors import UserError
from prunecli.io import atomic
from prunecli.io.sidecars import sidecar_path


def _save_state(path: Path, epoch: int, cfg: TrainConfig, optimizer, scheduler, extra: dict) -> None:
    """`extra`: the raw weights when the checkpoint holds others (EMA, a selected epoch), the EMA,
    the GradScaler and the best epoch so far. Every rank takes part (their RNG states are
    gathered); rank 0 writes."""
    import io

    rngs = dist.all_gather_object(torch.get_rng_state())
    if not dist.is_main():
        return
    buf = io.BytesIO()
    state = {"epoch": epoch, "config": cfg.model_dump(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rngs[0], **extra}
    if len(rngs) > 1:  # torchrun: each rank's own stream (dropout, drop-path) resumes too
        state["rng_ranks"] = rngs
    torch.save(state, buf)
    atomic.write_bytes(path, buf.getvalue())


def _restore_rng(state: dict) -> None:
    ranks, ctx = state.get("rng_ranks"), dist.context()
    torch.set_rng_state(ranks[ctx.rank] if ranks and len(ranks) == ctx.world else state["rng"])


def _saved_config(saved: dict) -> dict:
    """A state's options, with options added since it was written at their defaults.

    Every option added later (nesterov, weight_decay_mode, ...) defaults to the behaviour that
    came before it, so an older state resumes exactly when it was run with those defaults.
    """
    return {**TrainConfig().model_dump(), **saved}


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"nothing to resume: {path} does not exist (run without --resume first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"cannot read training state {path}: {str(error)[:200]}") from None


def fit(
    model, dataset, cfg: TrainConfig, device: str, out: str, save: Callable[[dict], None],
    teacher=None, resume_state: dict | None = None, stop_after: int | None = None, masks: dict | None = None,
    on_epoch: Callable[[torch.nn.Module], dict] | None = None, optimizer=None,
) -> dict:
    """Train `model` in place; `save(metrics)` writes the checkpoint after each epoch.

    `masks` ({parameter name: bool tensor}) are unstructured pruning masks kept at zero;
    `on_epoch(model)` adds numbers to each epoch's metrics and log line (e.g. a sparsity search).
    `optimizer`: continue with this one (its state kept) instead of a new one from `cfg`; the LR
    schedule restarts from the groups' `initial_lr` (unstructured pruning's shared optimizer).
    """
    from prunecli.engine import augment

    recon = dataset.task == "reconstruction"
    cfg = cfg.model_copy(update={"amp": resolve_amp(cfg.amp, device, dataset.task)})
    check_accum(cfg.batch_size, cfg.grad_accum)
    check_select(cfg.select, recon)
    dist.check_batch(cfg.batch_size)
    dataset.train_aug = augment.train_aug(cfg)  # --randaugment/--reprob (file-based families)
    mix = augment.mixer(cfg, dataset)  # --mixup/--cutmix
    train_loader = _loader(dataset, "train", cfg.batch_size, cfg, train=True)
    val_loader = _loader(dataset, "val", cfg.batch_size if recon else max(cfg.batch_size, 256), cfg)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    if masks:
        from prunecli.pruning.sparse import MaskKeeper

        MaskKeeper(model, masks).attach(optimizer)
    start = 0
    selection = Selection(cfg.select, recon)
    if resume_state is not None:
        if _saved_config(resume_state["config"]) != cfg.model_dump():
            raise UserError("--resume with different training options than the interrupted run")
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        _restore_rng(resume_state)
        if "model" in resume_state:  # the checkpoint holds EMA or best-epoch weights, not the raw ones
            model.load_state_dict(resume_state["model"])
        selection.load_state_dict(resume_state.get("selection", {}))
        start = resume_state["epoch"]
        err.print(f"resuming at epoch {start + 1}/{cfg.epochs}")
    train_model, runner = prepare(model, cfg, device)
    if resume_state is not None:
        runner.load_state_dict(resume_state)
    validated = runner.ema.module if runner.ema is not None else model
    raw_differs = runner.ema is not None or cfg.select != "last"
    loss_fn = _recon_loss(cfg) if recon else _loss(cfg, teacher)
    state_path = sidecar_path(out, "state.pt") if out != "-" else None
    metrics: dict = {}
    done = 0
    wrapped = dist.wrap(train_model, device, cfg.sync_bn)
    net = compile_model(wrapped.net) if cfg.compile else wrapped.net
    try:
        with progress() as bar:
            task = bar.add_task("train", total=len(train_loader), status="")
            for epoch in range(start, cfg.epochs):
                if stop_after is not None and done >= stop_after:
                    err.print(f"stopping after {done} epoch(s) as asked; continue with --resume")
                    break
                train_loader.set_epoch(epoch)
                if mix is not None:
                    mix.set_epoch(epoch)
                bar.reset(task, total=len(train_loader), description=f"epoch {epoch + 1}/{cfg.epochs}")
                t0 = time.perf_counter()
                with compile_errors(cfg.compile):
                    train_loss, seen = train_one_epoch(
                        net, train_loader, optimizer, scheduler, device, loss_fn, teacher,
                        on_step=lambda: bar.advance(task), mix=mix, runner=runner,
                    )
                train_loss, seen = _reduce_loss(train_loss, seen, device)
                secs = time.perf_counter() - t0
                if cfg.bn_recalibrate:  # every rank the same N whole batches, plain BN: one process's statistics
                    with wrapped.plain():
                        recalibrate_bn(validated, dataset.loader("train", cfg.batch_size, workers=cfg.workers),
                                       cfg.bn_recalibrate, device)
                for m in {id(model): model, id(validated): validated}.values():
                    dist.broadcast_buffers(m)  # the ranks validate the model rank 0 saves
                val, summary = _validate(validated, val_loader, device, cfg, recon, runner)
                metrics = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()
                                                                           if k != "samples"},
                           "images_per_s": seen / secs}
                with wrapped.plain():
                    extra = on_epoch(validated) if on_epoch is not None else {}
                    metrics.update(extra)
                    err.print(
                        f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {train_loss:.4f}  {summary}"
                        f"  lr {optimizer.param_groups[0]['lr']:.3g}  {secs:.1f}s"
                        + "".join(f"  {k} {v:.4g}" for k, v in extra.items())
                    )
                    tblog.log_epoch(metrics, optimizer.param_groups[0]["lr"], masks)  # --tensorboard (issue 17)
                    improved = selection.update(metrics, validated)
                    if out != "-":
                        if (cfg.select != "val_dc" or improved) and dist.is_main():  # val_dc: measurement domain
                            _save_selected(save, model, validated, selection, metrics)
                        extra_state = {"selection": selection.state_dict(), **runner.state_dict()}
                        if raw_differs:
                            extra_state["model"] = model.state_dict()
                        _save_state(state_path, epoch + 1, cfg, optimizer, scheduler, extra_state)
                done += 1
    finally:
        wrapped.close()
    if (out == "-" or cfg.epochs == 0) and dist.is_main():
        if metrics:
            _save_selected(save, model, validated, selection, metrics)
        else:
            save(metrics)
    return selection.header(metrics) if metrics else metrics


def _save_selected(save, model, validated, selection, metrics: dict) -> None:
    """Write the checkpoint with the selected weights (best epoch's, else the validated: EMA or raw)."""
    weights = selection.weights if selection.select == "best" else (
        None if validated is model else validated.state_dict())
    with weights_in(model, weights):
        save(selection.header(metrics))


def _loader(dataset, split: str, batch_size: int, cfg: TrainConfig, train: bool = False):
    """A loader of `split`; under torchrun this rank's slice of each global batch, and with
    --repeated-aug timm's repeated-augmentation stream (prunecli/data/shard.py)."""
    loader = dataset.loader(split, batch_size, train=train, seed=cfg.seed, workers=cfg.workers)
    return dist.shard(loader, train and cfg.repeated_aug, f"data {dataset.spec!r}")


def _reduce_loss(mean: float, count: int, device: str) -> tuple[float, int]:
    """The epoch's mean training loss and sample count over all ranks."""
    if dist.context().world == 1:
        return mean, count
    sums = dist.all_reduce_sum(torch.tensor([mean * count, float(count)], dtype=torch.float64, device=device))
    return float(sums[0]) / max(1.0, float(sums[1])), int(sums[1])


def _validate(model, loader, device: str, cfg: TrainConfig, recon: bool, runner=None) -> tuple[dict, str]:
    """Validation numbers and their log text. Ground-truth-free strategies see only `dc`."""
    if not recon:
        val = evaluate(model, loader, device, runner=runner)
        return {"top1": val["top1"], "top5": val["top5"], "loss": val["loss"]}, f"val top1 {val['top1']:.2f}%"
    from prunecli.engine import recon as R

    val = R.evaluate(model, loader, device, ground_truth=cfg.strategy == "supervised")
    text = f"val dc {val['dc']:.4g}" + (f"  psnr {val['psnr']:.2f}  ssim {val['ssim']:.4f}" if "psnr" in val else "")
    return val, text


def _recon_loss(cfg: TrainConfig):
    from prunecli.engine.recon import ReconLoss

    return ReconLoss(cfg.strategy, cfg.loss)


def _loss(cfg: TrainConfig, teacher):
    if teacher is not None and cfg.distill == "hard":
        smooth_teacher = cfg.label_smoothing if cfg.kd_label_smoothing else 0.0
        return lambda s, y, t: hard_distill_loss(s, t, y, cfg.kd_alpha, cfg.label_smoothing, smooth_teacher)
    if teacher is not None:
        return lambda s, y, t: kd_loss(s, t, y, cfg.kd_alpha, cfg.kd_temperature, cfg.label_smoothing)
    return lambda s, y: cross_entropy(s, y, cfg.label_smoothing)  # Mixup's soft targets or labels
