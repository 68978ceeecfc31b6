"""Which epoch's weights a training run keeps (`--select`), and the weights it validates (EMA).

- last: the final epoch's; best: the epoch of highest val top-1 (classification); val_dc: the
  lowest measurement-domain error (reconstruction, no ground truth). Ties keep the earlier epoch.
- Classification headers always record `best_epoch`, `best_val_top1`, `last_epoch` and
  `last_val_top1`, whatever is selected, so a `--select last` checkpoint says what best would
  have given and a `--select best` one says how far the last epoch drifted.
- The best-so-far (its metrics, and for `best` its weights) goes into the resume state, so
  `--resume` selects exactly as the uninterrupted run.
"""

from __future__ import annotations

import contextlib

import torch

from prunecli.errors import UserError


def check_select(select: str, recon: bool) -> None:
    if select == "best" and recon:
        raise UserError("--select best reads val top-1, which reconstruction models have not; use --select val_dc")
    if select == "val_dc" and not recon:
        raise UserError("--select val_dc is for reconstruction models; use --select best (highest val top-1)")


def _clone(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def weights_in(model, state: dict | None):
    """`model` holding `state` (EMA or best-epoch weights) for the duration, its own after."""
    if state is None:
        yield model
        return
    own = _clone(model)
    model.load_state_dict(state)
    try:
        yield model
    finally:
        model.load_state_dict(own)


class Selection:
    """The best epoch so far and, for `--select best`, a copy of its (validated) weights."""

    def __init__(self, select: str, recon: bool):
        self.select, self.recon = select, recon
        self.key = "val_dc" if recon else "val_top1"
        self.best: dict | None = None
        self.weights: dict | None = None

    def update(self, metrics: dict, validated) -> bool:
        """Record this epoch; True when it is the best so far."""
        value = metrics.get(self.key)
        if value is None:
            return False
        if self.best is not None and not (value < self.best[self.key] if self.recon else value > self.best[self.key]):
            return False
        self.best = dict(metrics)
        if self.select == "best":
            self.weights = _clone(validated)
        return True

    def header(self, metrics: dict) -> dict:
        """The checkpoint's metrics: the selected epoch's numbers, plus best_* and last_* (classification)."""
        chosen = self.best if self.select == "best" and self.best is not None else metrics
        if self.recon or self.best is None:
            return dict(chosen)
        return {**chosen, "best_epoch": self.best["epoch"], "best_val_top1": self.best["val_top1"],
                "last_epoch": metrics["epoch"], "last_val_top1": metrics["val_top1"]}

    def state_dict(self) -> dict:
        out: dict = {"best": self.best} if self.best is not None else {}
        if self.weights is not None:
            out["weights"] = self.weights
        return out

    def load_state_dict(self, state: dict) -> None:
        self.best, self.weights = state.get("best"), state.get("weights")
