"""The DeiT/ConvNeXt augmentation and regularisation stack, from timm (issue 13).

- `--randaugment SPEC`, `--reprob P`: timm's training transform (`create_transform(is_training=True,
  auto_augment=SPEC, re_prob=P)`) for the file-based families, whose samples are decoded one by
  one (prunecli/data/timm_aug.py). In-memory families refuse them with one line: their batches
  are augmented as whole tensors, and a per-sample PIL pipeline there would be a second loader.
- `--mixup A`, `--cutmix A`: `timm.data.Mixup` on each batch, on the device, with the label
  smoothing folded into its soft targets (as DeiT's main.py); the loss is then
  `timm.loss.SoftTargetCrossEntropy`. Mixup draws from numpy's global RNG: each batch draws from
  a state seeded by (seed, epoch, step) and the caller's state is put back, so a resumed run
  mixes exactly as an uninterrupted one and nothing else's randomness moves.
- `--drop-path P`, `--dropout P`: timm's `drop_path_rate` / `drop_rate`, installed on the model
  already built (from scratch or rebuilt from a checkpoint) by `set_drop` — the header's model
  arguments are not changed, so a checkpoint reloads exactly as before (both are identity in eval).
"""

from __future__ import annotations

import numpy as np
import torch

from prunecli.errors import UserError

FILE_FAMILIES = ("imagefolder", "ham10000")


def check_randaugment(spec: str | None) -> str | None:
    """A RandAugment spec timm can parse (`rand-m9-mstd0.5-inc1`), or a ValueError saying why not."""
    if spec is None:
        return None
    from timm.data.auto_augment import rand_augment_transform

    if not spec.startswith("rand"):
        raise ValueError(f"{spec!r} is not a RandAugment spec; expected e.g. rand-m9-mstd0.5-inc1")
    try:
        rand_augment_transform(spec, {})
    except (AssertionError, ValueError, KeyError, IndexError) as error:
        raise ValueError(f"{spec!r} is not a RandAugment spec timm parses ({error or 'bad section'}); "
                         "expected e.g. rand-m9-mstd0.5-inc1") from None
    return spec


def train_aug(cfg) -> dict | None:
    """The per-sample training augmentation the options ask for, or None (the family's own)."""
    if cfg.randaugment is None and not cfg.reprob:
        return None
    return {"auto_augment": cfg.randaugment, "re_prob": cfg.reprob}


def _seed(*parts: int) -> int:
    from prunecli.data.imagefolder import _mix

    return _mix(*parts) % (2**32)


class Mixer:
    """timm's Mixup/CutMix on a batch, seeded by (seed, epoch, step); see the module docstring.

    An odd batch (the last of an epoch) mixes its first n−1 samples and keeps the last one
    unmixed with its smoothed one-hot target: timm's batch mode pairs sample i with n−1−i.
    """

    def __init__(self, cfg, num_classes: int):
        from timm.data import Mixup

        self.mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                           num_classes=num_classes)
        self.seed, self.epoch, self.step = cfg.seed, 0, 0
        self.smoothing, self.num_classes = cfg.label_smoothing, num_classes

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from timm.data.mixup import mixup_target

        saved = np.random.get_state()
        np.random.seed(_seed(self.seed, self.epoch, self.step))
        self.step += 1
        try:
            even = len(y) - len(y) % 2
            if even == len(y):
                return self.mixup(x, y)
            xm, ym = self.mixup(x[:even], y[:even]) if even else (x[:0], y[:0])
            last = mixup_target(y[even:], self.num_classes, smoothing=self.smoothing)
            return torch.cat([xm, x[even:]]), torch.cat([ym.to(last.dtype).reshape(-1, self.num_classes), last])
        finally:
            np.random.set_state(saved)


def mixer(cfg, dataset) -> Mixer | None:
    """A Mixer when --mixup or --cutmix is given (classification only), else None."""
    if not cfg.mixup and not cfg.cutmix:
        return None
    if dataset.task != "classification":
        raise UserError("--mixup/--cutmix are for classification data")
    return Mixer(cfg, dataset.num_classes)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """CE for hard labels (with label smoothing) or for Mixup's soft targets (smoothing already
    folded in: timm's SoftTargetCrossEntropy), so every loss takes either kind of batch."""
    if targets.is_floating_point():
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()(logits, targets)
    return torch.nn.functional.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def set_drop(model, model_name: str, model_kwargs: dict, drop_path: float, dropout: float) -> int:
    """Turn on stochastic depth / dropout in `model` (built or reloaded); returns modules set.

    timm models: a reference model is built on the meta device with `drop_path_rate`/`drop_rate`
    (timm's own per-block schedule), and its DropPath/Dropout modules are copied into `model` at
    the same paths (replacing the Identity timm builds for rate 0; a pruned-away block is skipped).
    Other models: `--dropout` sets p of their existing nn.Dropout modules; `--drop-path` is refused.
    """
    if not drop_path and not dropout:
        return 0
    from prunecli.models import get_entry

    if get_entry(model_name).family != "timm":
        if drop_path:
            raise UserError(f"--drop-path: only timm models have stochastic depth (timm's drop_path_rate); "
                            f"{model_name} has none")
        drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        if not drops:
            raise UserError(f"--dropout: {model_name} has no dropout layer to set")
        for m in drops:
            m.p = dropout
        return len(drops)
    return _copy_timm_drops(model, model_name, model_kwargs, drop_path, dropout)


def _copy_timm_drops(model, name: str, kwargs: dict, drop_path: float, dropout: float) -> int:
    from timm.layers import DropPath

    from prunecli.models import build_model

    extra = {k: v for k, v in (("drop_path_rate", drop_path), ("drop_rate", dropout)) if v}
    with torch.device("meta"):
        try:
            reference, _, _ = build_model(name, **kwargs, **extra)
        except UserError:
            raise UserError(f"--drop-path/--dropout: {name} does not take {', '.join(extra)}") from None
    kinds = (DropPath,) if drop_path else ()
    kinds += (torch.nn.Dropout,) if dropout else ()
    count = 0
    for path, ref in reference.named_modules():
        if not path or not isinstance(ref, kinds) or not _drop_rate(ref):
            continue
        parent_path, _, attr = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path)
        except AttributeError:
            continue  # removed by pruning
        here = getattr(parent, attr, None)
        if isinstance(here, torch.nn.Identity | DropPath | torch.nn.Dropout):
            setattr(parent, attr, type(ref)(_drop_rate(ref)))
            count += 1
    if not count:
        raise UserError(f"--drop-path/--dropout: {name} has no place for them ({', '.join(extra)} changes nothing)")
    return count


def _drop_rate(module) -> float:
    return float(getattr(module, "drop_prob", None) or getattr(module, "p", 0.0) or 0.0)
