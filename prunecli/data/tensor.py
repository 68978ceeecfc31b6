"""Fast loaders for data sets that fit in memory as uint8 tensors (digits, CIFAR, synthetic).

Whole batches are sliced, augmented and normalised with tensor ops: no per-sample Python
transform and no collate, so the loader never becomes the bottleneck of a small CNN on CPU.
Shuffling and augmentation draw from a generator seeded by (seed, epoch), which makes a
resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass
class Augment:
    pad: int = 0
    flip: bool = False


class TensorLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
    ):
        self.images, self.labels = images, labels  # uint8 N×C×H×W, int64 N
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.augment = augment if train and augment else Augment()
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            if self.augment.pad or self.augment.flip:
                x = _augment(x, self.augment, gen)
            x = (x.float() - self.mean) / self.std
            yield x, self.labels[idx]
        self.epoch += 1

    def targets(self) -> torch.Tensor:
        """Every sample's label, in loader order (calibration draws read these, not the images)."""
        return self.labels

    def subset(self, indices: list[int]) -> TensorLoader:
        """A loader over the samples at `indices`, in that order, unshuffled and unaugmented."""
        part = copy.copy(self)
        idx = torch.as_tensor(indices, dtype=torch.long)
        part.images, part.labels = self.images[idx], self.labels[idx]
        part.train, part.augment, part.epoch = False, Augment(), 0
        return part


def _augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    if aug.pad:
        p = aug.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
        x = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
    if aug.flip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x
