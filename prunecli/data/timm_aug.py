"""timm's per-sample training transform for the file-based families (`--randaugment`, `--reprob`).

`timm.data.create_transform(is_training=True, ...)`: RandomResizedCrop (bicubic, as the DeiT and
ConvNeXt recipes' `--train-interpolation bicubic`), horizontal flip, RandAugment, ToTensor,
Normalize, RandomErasing (per-pixel noise, timm's `re_mode='pixel'` as DeiT/ConvNeXt). Colour
jitter is off with a RandAugment spec, as timm does. It replaces the family's own training
transform only when one of the two options is given.

Determinism: RandAugment and RandomErasing draw from Python's `random` and numpy as well as
torch, so the loader's per-sample seeding (imagefolder.SeededSamples) seeds all three
(`python_rngs`) and restores them after, keeping batches a function of (seed, epoch). Only
loaders built with these options do so (`all_rngs`); the default transforms use torch's RNG only.
"""

from __future__ import annotations

from contextlib import contextmanager


def train_transform(size: int, mean: tuple, std: tuple, options: dict):
    from timm.data import create_transform

    return create_transform(input_size=size, is_training=True, auto_augment=options.get("auto_augment"),
                            re_prob=options.get("re_prob", 0.0), re_mode="pixel", re_count=1,
                            interpolation="bicubic", mean=mean, std=std)


@contextmanager
def python_rngs(seed: int, active: bool = True):
    """Seed Python's `random` and numpy's global RNG with `seed` inside, restore them after.

    Only when `active` (a timm transform is in use): the default transforms draw from torch's RNG
    only, so their loaders skip saving and restoring numpy's 624-word state for every sample."""
    import random

    import numpy as np

    if not active:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
