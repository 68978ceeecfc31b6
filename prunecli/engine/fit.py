"""A training run: epochs of train + validate, a checkpoint after every epoch, and resume.

The optimizer, scheduler, epoch and RNG state go to `<stem>.state.pt` beside the output
(plain tensors and numbers, loaded with `weights_only=True`); the weights live in the
output checkpoint itself. `--resume` reloads both and continues at the next epoch; the
loaders are seeded per epoch, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from prunecli.cli._output import err, progress
from prunecli.engine import dist
from prunecli.engine.augment import cross_entropy
from prunecli.engine.config import TrainConfig
from prunecli.engine.loop import evaluate, hard_distill_loss, kd_loss, recalibrate_bn, train_one_epoch
from prunecli.engine.optim import make_optimizer, make_scheduler
from prunecli.errors import UserError
from prunecli.io import atomic
from prunecli.io.sidecars import sidecar_path


def _save_state(path: Path, epoch: int, cfg: TrainConfig, optimizer, scheduler) -> None:
    """Every rank takes part (their RNG states are gathered); rank 0 writes."""
    import io

    rngs = dist.all_gather_object(torch.get_rng_state())
    if not dist.is_main():
        return
    buf = io.BytesIO()
    state = {"epoch": epoch, "config": cfg.model_dump(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rngs[0]}
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

    dist.check_batch(cfg.batch_size)
    dataset.train_aug = augment.train_aug(cfg)  # --randaugment/--reprob (file-based families)
    mix = augment.mixer(cfg, dataset)  # --mixup/--cutmix
    train_loader = _loader(dataset, "train", cfg.batch_size, cfg, train=True)
    recon = dataset.task == "reconstruction"
    val_loader = _loader(dataset, "val", cfg.batch_size if recon else max(cfg.batch_size, 256), cfg)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    if masks:
        from prunecli.pruning.sparse import MaskKeeper

        MaskKeeper(model, masks).attach(optimizer)
    start = 0
    if resume_state is not None:
        if _saved_config(resume_state["config"]) != cfg.model_dump():
            raise UserError("--resume with different training options than the interrupted run")
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        _restore_rng(resume_state)
        start = resume_state["epoch"]
        err.print(f"resuming at epoch {start + 1}/{cfg.epochs}")
    loss_fn = _recon_loss(cfg) if recon else _loss(cfg, teacher)
    best = float("inf")
    state_path = sidecar_path(out, "state.pt") if out != "-" else None
    metrics: dict = {}
    done = 0
    wrapped = dist.wrap(model, device, cfg.sync_bn)
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
                train_loss, seen = train_one_epoch(
                    wrapped.net, train_loader, optimizer, scheduler, device, loss_fn, teacher,
                    on_step=lambda: bar.advance(task), mix=mix,
                )
                train_loss, seen = _reduce_loss(train_loss, seen, device)
                secs = time.perf_counter() - t0
                if cfg.bn_recalibrate:  # every rank the same N whole batches, plain BN: one process's statistics
                    with wrapped.plain():
                        recalibrate_bn(model, dataset.loader("train", cfg.batch_size, workers=cfg.workers),
                                       cfg.bn_recalibrate, device)
                dist.broadcast_buffers(model)  # the ranks validate the model rank 0 saves
                val, summary = _validate(model, val_loader, device, cfg, recon)
                metrics = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()
                                                                           if k != "samples"},
                           "images_per_s": seen / secs}
                with wrapped.plain():
                    extra = on_epoch(model) if on_epoch is not None else {}
                    metrics.update(extra)
                    err.print(
                        f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {train_loss:.4f}  {summary}"
                        f"  lr {optimizer.param_groups[0]['lr']:.3g}  {secs:.1f}s"
                        + "".join(f"  {k} {v:.4g}" for k, v in extra.items())
                    )
                    if out != "-":
                        if cfg.select == "last" or metrics["val_dc"] < best:  # val_dc: measurement-domain selection
                            best = metrics.get("val_dc", best)
                            _main_only(save, metrics)
                        _save_state(state_path, epoch + 1, cfg, optimizer, scheduler)
                done += 1
    finally:
        wrapped.close()
    if out == "-" or cfg.epochs == 0:
        _main_only(save, metrics)
    return metrics


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


def _main_only(save: Callable[[dict], None], metrics: dict) -> None:
    """Checkpoints are written by rank 0 only (the others would only build the same bytes)."""
    if dist.is_main():
        save(metrics)


def _validate(model, loader, device: str, cfg: TrainConfig, recon: bool) -> tuple[dict, str]:
    """Validation numbers and their log text. Ground-truth-free strategies see only `dc`."""
    if not recon:
        val = evaluate(model, loader, device)
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
    return lambda s, y: cross_entropy(s, y, cfg.label_smoothing)  # Mixup's soft targets or labels
