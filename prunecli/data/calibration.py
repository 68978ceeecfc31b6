"""Calibration draws: a seeded random sample of training images, as the model sees them at test time.

Data-driven pruning looks at a few training images: Taylor importance (and isomorphic pruning,
Fang et al. ECCV 2024) sums loss gradients over calibration batches; the similarity graph (Li et
al. PRL 2023) hashes feature maps of `--samples` images. The reference code draws those images
at random (a shuffled train loader; `random.sample` of the training set), without augmentation,
through the model's evaluation preprocessing. Taking the first images of an unshuffled loader
instead sees only the first classes of a class-sorted folder (ImageNet: 50 × 64 images cover
about 3 of 1,000 classes).

`draw` picks `images` indices of the train split without replacement from a generator seeded
by `seed` (the same seed gives the same images; the draw never reads an image it does not use:
labels come from the file list or the in-memory tensor), and returns their batches in the drawn
order with the split's evaluation transform: the data family's own (imagefolder: resize and
centre crop; CIFAR/digits: normalisation only), or the model's preprocessing when the family
applies one (`Dataset.preprocess`, timm's data config on image folders, as `evaluate` does).
Its `record` says what calibration saw, for `.masks.json` and analysis reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prunecli.data import Dataset, Loader
from prunecli.errors import UserError


@dataclass
class Calibration:
    """The drawn batches (a loader over the chosen samples, in drawn order) and what was drawn."""

    batches: Loader = field(repr=False)
    indices: list[int]
    """Positions of the drawn samples in the train split (the family's file or tensor order)."""
    record: dict[str, Any]
    """`{"data", "seed", "images", "classes", "split", "transform", "preprocess"}`, JSON-ready."""


def draw(dataset: Dataset, images: int, *, seed: int, batch_size: int, exact: bool = True) -> Calibration:
    """`images` training samples drawn at random without replacement (seeded), unaugmented.

    With `exact`, asking for more images than the split holds is an error; otherwise the whole
    split is used (in a seeded random order), as a reference loop over a short loader would.
    """
    import torch

    if images < 1:
        raise UserError(f"calibration needs at least one image, got {images}")
    source = dataset.loader("train", batch_size, train=False)  # eval transform, no shuffling
    targets = source.targets()
    total = len(targets) if targets is not None else dataset.sizes["train"]
    if images > total and exact:
        raise UserError(f"asked for {images} calibration images but the training split of "
                        f"{dataset.spec} has only {total}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:images]
    indices = order.tolist()
    classes = None if targets is None else len(set(torch.as_tensor(targets)[order].tolist()))
    applied = dataset.preprocess if dataset.applies_preprocess else None
    record = {"data": dataset.spec, "seed": seed, "images": len(indices), "classes": classes,
              "split": "train", "transform": "eval", "preprocess": _plain(applied)}
    return Calibration(source.subset(indices), indices, record)


def _plain(cfg: dict | None) -> dict | None:
    """A preprocessing config with tuples as lists (JSON), or None when none was applied."""
    if not cfg:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
