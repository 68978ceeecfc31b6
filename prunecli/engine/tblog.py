"""`train` / `finetune --tensorboard DIR`: the per-epoch numbers as TensorBoard scalars.

Most of our users watch runs in TensorBoard, so the numbers the epoch log line prints go to
an event file too, through torch's own `SummaryWriter`. Tags: `train/loss`, `val/<metric>`
(top1, top5, loss; psnr, ssim, nmse, dc for reconstruction), `lr` (at the end of the epoch, as
logged), `speed/images_per_s`, and `sparsity/<name>` for what a search adds (GSparsity's
`zero_groups`, `macs_ratio`, ...) and `sparsity/weights` (the zero fraction the unstructured
masks keep). The step is the epoch number (1-based, as logged).

tensorboard is an optional extra (`pip install -e .[tensorboard]`), imported only when the
option is given; under torchrun only rank 0 writes. The writer is opened by the command
(`writing`) and fed by `fit` (`log_epoch`), so the training loop does not carry it around.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from prunecli.errors import UserError

_writer = None


@contextlib.contextmanager
def writing(logdir: str | None):
    """Open a SummaryWriter on `logdir` for the duration (nothing when None or not rank 0)."""
    global _writer
    from prunecli.engine.dist import is_main

    if logdir is None:
        yield
        return
    # checked on every rank, so under torchrun all stop at once rather than rank 0 alone
    if Path(logdir).exists() and not Path(logdir).is_dir():
        raise UserError(f"--tensorboard {logdir} is a file; give a folder (TensorBoard's log dir)")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        # `\\[`: the error line is rich markup, which would take `[tensorboard]` for a style tag
        raise UserError("--tensorboard needs the tensorboard package: pip install -e .\\[tensorboard]") from None
    if not is_main():
        yield
        return
    _writer = SummaryWriter(log_dir=logdir)
    try:
        yield
    finally:
        _writer.close()
        _writer = None


def tag(key: str) -> str:
    """The TensorBoard tag of an epoch metric (`train_loss` → `train/loss`, `val_top1` → `val/top1`)."""
    for prefix in ("train", "val"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return "speed/images_per_s" if key == "images_per_s" else f"sparsity/{key}"


def log_epoch(metrics: dict, lr: float, masks: dict | None = None) -> None:
    """One epoch's scalars (a no-op without --tensorboard)."""
    if _writer is None:
        return
    step = int(metrics["epoch"])
    for key, value in metrics.items():
        if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
            _writer.add_scalar(tag(key), float(value), step)
    _writer.add_scalar("lr", float(lr), step)
    if masks:
        kept = sum(float(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        _writer.add_scalar("sparsity/weights", 1.0 - kept / max(1, total), step)
    _writer.flush()
