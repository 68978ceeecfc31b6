"""Optimizer and learning-rate schedule factories."""

from __future__ import annotations

import math

import torch

from prunecli.engine.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, protected: tuple[str, ...] = ()) -> torch.optim.Optimizer:
    if cfg.optimizer == "proxsgd":  # GSparsity's search: group soft-thresholding of output filters
        from prunecli.engine.proxsgd import ProxSGD, param_groups

        return ProxSGD(param_groups(model, cfg, protected), lr=cfg.lr, rho=cfg.momentum, snap=cfg.prox_snap)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # L2 added to the gradient (coupled), as Keras' kernel_regularizer + Adam
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(  # torch refuses Nesterov without momentum
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """A per-step LambdaLR: linear warm-up, then cosine / step / constant (per-epoch semantics)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "step":
            epoch = step // steps_per_epoch
            decays = sum(epoch >= m for m in cfg.milestones) if cfg.milestones else epoch // cfg.step_size
            return cfg.gamma**decays
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
