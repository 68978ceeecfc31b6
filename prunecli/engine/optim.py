"""Optimizer and learning-rate schedule factories."""

from __future__ import annotations

import math

import torch

from prunecli.engine.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, protected: tuple[str, ...] = ()) -> torch.optim.Optimizer:
    if cfg.weight_decay_mode == "keras" and cfg.optimizer not in ("sgd", "adam"):
        from prunecli.errors import UserError

        raise UserError(f"--weight-decay-mode keras is Keras' l2 loss term (added to the gradient): use "
                        f"--optimizer sgd or adam, not {cfg.optimizer}")
    if cfg.optimizer == "proxsgd":  # GSparsity's search: group soft-thresholding of output filters
        from prunecli.engine.proxsgd import ProxSGD, param_groups

        return ProxSGD(param_groups(model, cfg, protected), lr=cfg.lr, rho=cfg.momentum, snap=cfg.prox_snap)
    params = decay_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # L2 added to the gradient (coupled), as Keras' kernel_regularizer + Adam
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(  # torch refuses Nesterov without momentum
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def decay_groups(model: torch.nn.Module, cfg: TrainConfig) -> list:
    """The trainable parameters, as one list (`--weight-decay-mode all`: every parameter decays by
    `weight_decay`) or as two groups (`keras`).

    Keras' `kernel_regularizer=l2(λ)` adds λ·Σw² to the loss, a gradient of 2λw, and only on the
    parameters that carry a regularizer: the model's `keras_regularized()` names them (the Keras
    models of Li et al. 2023), else every Conv/Linear kernel (`.weight`; biases and norms get none).
    The factor 2 and the coupling (added to the gradient, also under Adam) are Keras'.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.weight_decay_mode == "all":
        return [p for _, p in named]
    chosen = getattr(model, "keras_regularized", None)
    if chosen is not None:
        names = set(chosen())
    else:
        kernels = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
        names = {f"{m_name}.weight" if m_name else "weight" for m_name, m in model.named_modules()
                 if isinstance(m, kernels)}
    groups = [{"params": [p for n, p in named if n in names], "weight_decay": 2 * cfg.weight_decay},
              {"params": [p for n, p in named if n not in names], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


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
