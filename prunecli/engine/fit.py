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
import torch.nn.functional as F

from prunecli.cli._output import err, progress
from prunecli.engine.amp import check_accum, compile_errors, prepare, resolve_amp
from prunecli.engine.config import TrainConfig
from prunecli.engine.loop import evaluate, hard_distill_loss, kd_loss, recalibrate_bn, train_one_epoch
from prunecli.engine.optim import make_optimizer, make_scheduler
from prunecli.engine.select import Selection, check_select, weights_in
from prunecli.errors import UserError
from prunecli.io import atomic
from prunecli.io.sidecars import sidecar_path


def _save_state(path: Path, epoch: int, cfg: TrainConfig, optimizer, scheduler, extra: dict) -> None:
    """`extra`: the raw weights when the checkpoint holds others (EMA, a selected epoch), the EMA,
    the GradScaler and the best epoch so far."""
    import io

    buf = io.BytesIO()
    torch.save(
        {"epoch": epoch, "config": cfg.model_dump(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), **extra},
        buf,
    )
    atomic.write_bytes(path, buf.getvalue())


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
    recon = dataset.task == "reconstruction"
    cfg = cfg.model_copy(update={"amp": resolve_amp(cfg.amp, device, dataset.task)})
    check_accum(cfg.batch_size, cfg.grad_accum)
    check_select(cfg.select, recon)
    train_loader = dataset.loader("train", cfg.batch_size, train=True, seed=cfg.seed, workers=cfg.workers)
    val_loader = dataset.loader("val", cfg.batch_size if recon else max(cfg.batch_size, 256), workers=cfg.workers)
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
        torch.set_rng_state(resume_state["rng"])
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
    with progress() as bar:
        task = bar.add_task("train", total=len(train_loader), status="")
        for epoch in range(start, cfg.epochs):
            if stop_after is not None and done >= stop_after:
                err.print(f"stopping after {done} epoch(s) as asked; continue with --resume")
                break
            train_loader.set_epoch(epoch)
            bar.reset(task, total=len(train_loader), description=f"epoch {epoch + 1}/{cfg.epochs}")
            t0 = time.perf_counter()
            with compile_errors(cfg.compile):
                train_loss, seen = train_one_epoch(
                    train_model, train_loader, optimizer, scheduler, device, loss_fn, teacher,
                    on_step=lambda: bar.advance(task), runner=runner,
                )
            secs = time.perf_counter() - t0
            if cfg.bn_recalibrate:
                recalibrate_bn(validated, dataset.loader("train", cfg.batch_size, workers=cfg.workers),
                               cfg.bn_recalibrate, device)
            val, summary = _validate(validated, val_loader, device, cfg, recon, runner)
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()
                                                                       if k != "samples"},
                       "images_per_s": seen / secs}
            extra = on_epoch(validated) if on_epoch is not None else {}
            metrics.update(extra)
            err.print(
                f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {train_loss:.4f}  {summary}"
                f"  lr {optimizer.param_groups[0]['lr']:.3g}  {secs:.1f}s"
                + "".join(f"  {k} {v:.4g}" for k, v in extra.items())
            )
            improved = selection.update(metrics, validated)
            if out != "-":
                if cfg.select != "val_dc" or improved:  # val_dc: measurement-domain selection
                    _save_selected(save, model, validated, selection, metrics)
                extra_state = {"selection": selection.state_dict(), **runner.state_dict()}
                if raw_differs:
                    extra_state["model"] = model.state_dict()
                _save_state(state_path, epoch + 1, cfg, optimizer, scheduler, extra_state)
            done += 1
    if out == "-" or cfg.epochs == 0:
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
        return lambda s, y, t: hard_distill_loss(s, t, y, cfg.kd_alpha, cfg.label_smoothing)
    if teacher is not None:
        return lambda s, y, t: kd_loss(s, t, y, cfg.kd_alpha, cfg.kd_temperature, cfg.label_smoothing)
    return lambda s, y: F.cross_entropy(s, y, label_smoothing=cfg.label_smoothing)
