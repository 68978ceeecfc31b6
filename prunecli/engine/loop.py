"""One training epoch and one evaluation pass: plain PyTorch, nothing hidden.

The loss is accumulated on the device and read once per epoch, so the loop never forces a
host-device sync per step and costs what a bare PyTorch loop costs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from prunecli.engine import dist
from prunecli.engine.augment import cross_entropy


def kd_loss(student_logits, teacher_logits, targets, alpha: float, temperature: float, label_smoothing=0.0):
    """Hinton et al. 2015: (1-α)·CE + α·T²·KL(softmax(t/T) ‖ softmax(s/T)).

    `targets` may be Mixup's soft targets (smoothing folded in); the KL term is ours (batchmean),
    not DeiT's soft variant (sum over the logits' numel)."""
    ce = cross_entropy(student_logits, targets, label_smoothing)
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean", log_target=True,
    )
    return (1 - alpha) * ce + alpha * t * t * kl


def hard_distill_loss(student_out, teacher_logits, targets, alpha: float, label_smoothing=0.0,
                      teacher_smoothing=0.0):
    """Touvron et al. 2021 (DeiT) hard distillation: (1-α)·CE(cls, y) + α·CE(dist, argmax teacher).

    A DeiT with a distillation token trains its two heads separately (`student_out` is then the
    pair (cls, dist)); any other student uses its one output for both terms. As DeiT's
    DistillationLoss, label smoothing (or Mixup's soft targets, smoothing folded in) applies to the
    CE(cls, y) term only; `teacher_smoothing` smooths CE(dist, teacher argmax) too (the
    Isomorphic-Pruning reference applies its one smoothed criterion to both terms).
    """
    cls, dist_out = student_out if isinstance(student_out, tuple) else (student_out, student_out)
    ce = cross_entropy(cls, targets, label_smoothing)
    return (1 - alpha) * ce + alpha * F.cross_entropy(dist_out, teacher_logits.argmax(dim=1),
                                                 label_smoothing=teacher_smoothing)


def train_one_epoch(
    model, loader, optimizer, scheduler, device: str, loss_fn: Callable, teacher=None, on_step=None, mix=None,
    runner=None,
) -> tuple[float, int]:
    """Returns (mean loss, samples seen). `mix` (engine/augment.py Mixer) mixes each batch on the
    device before the model (and the teacher) see it; `runner` (engine/amp.py) does autocast,
    memory format, micro-batches and the scaled step (without one, a plain fp32 step)."""
    from prunecli.engine.amp import StepRunner

    runner = runner or StepRunner()
    model.train()
    total = torch.zeros((), device=device)
    count = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if mix is not None:
            x, y = mix(x, y)
        x = runner.inputs(x)
        optimizer.zero_grad(set_to_none=True)
        share = getattr(loader, "batch_weight", 1.0)  # torchrun: uneven last batch (prunecli/data/shard.py)
        for xs, ys, weight, sync in runner.micro_batches(model, x, y):
            with sync:
                with runner.autocast():
                    loss = _loss_of(model, xs, ys, loss_fn, teacher)
                runner.backward(loss, weight if share == 1.0 else (1.0 if weight is None else weight) * share)
            total += loss.detach().float() * len(ys)
        runner.step(model, optimizer)
        scheduler.step()
        count += len(y)
        if on_step is not None:
            on_step()
    return float(total) / max(1, count), count


def _loss_of(model, x, y, loss_fn: Callable, teacher):
    logits = model(x)
    t_logits = None
    if teacher is not None:
        with torch.no_grad():
            t_logits = teacher(x)
    if getattr(loss_fn, "full", False):  # reconstruction strategies also see the input and the model
        return loss_fn(logits, y, t_logits, x, model)
    if teacher is not None:
        return loss_fn(logits, y, t_logits)
    return loss_fn(logits, y)


@torch.no_grad()
def evaluate(model, loader, device: str, on_step=None, runner=None) -> dict[str, float]:
    """Top-1, top-5 (top-k for k < 5 classes) accuracy in percent, and mean cross-entropy
    (the logits under `runner`'s autocast and memory format, the loss in fp32)."""
    from prunecli.engine.amp import StepRunner

    runner = runner or StepRunner()
    model.eval()
    loss = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device)
    top5 = torch.zeros((), device=device)
    n = 0
    for x, y in loader:
        x, y = runner.inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        with runner.autocast():
            logits = model(x)
        logits = logits.float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hit = topk == y.unsqueeze(1)
        top1 += hit[:, 0].sum()
        top5 += hit.any(1).sum()
        n += len(y)
        if on_step is not None:
            on_step()
    if dist.context().distributed:  # every rank evaluated its own slice: the sums over all ranks
        sums = dist.all_reduce_sum(torch.stack([loss.double(), top1.double(), top5.double(),
                                                torch.tensor(float(n), dtype=torch.float64, device=device)]))
        loss, top1, top5, n = sums[0], sums[1], sums[2], int(sums[3])
    n = max(1, n)
    return {"top1": 100 * float(top1) / n, "top5": 100 * float(top5) / n, "loss": float(loss) / n, "samples": n}


@torch.no_grad()
def recalibrate_bn(model, loader, batches: int, device: str) -> None:
    """Recompute BatchNorm running statistics as plain averages over `batches` training batches.

    After a search that zeroes filters abruptly (ProxSGD), the running statistics lag the
    weights and evaluation-mode accuracy collapses although the model itself is fine;
    fresh statistics fix that without touching a weight.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns or batches <= 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    was = model.training
    model.train()
    try:
        for i, (x, _) in enumerate(loader):
            if i >= batches:
                break
            model(x.to(device, non_blocking=True))
    finally:
        model.train(was)
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
