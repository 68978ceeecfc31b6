"""Fast loaders for data sets that fit in memory as uint8 tensors (digits, CIFAR, synthetic).

Whole batches are sliced, augmented and normalised with tensor ops: no per-sample Python
transform and no collate, so the loader never becomes the bottleneck of a small CNN on CPU.
Shuffling and augmentation draw from a generator seeded by (seed, epoch), which makes a
resumed run see exactly the batches an uninterrupted one would.

In-memory image families (CIFAR, digits) take the same query options, parsed here:
`?aug=crop|shift|none&norm=dataset|half` (see `parse_options`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass
class Augment:
    pad: int = 0
    flip: bool = False
    shift: float = 0.0
    """Keras-style random shift: at most this fraction of the height/width (see `_shift`)."""


AUGMENTS = ("crop", "shift", "none")
NORMS = ("dataset", "half")
HALF = (0.5, 0.5, 0.5)
"""`norm=half`: torchvision `Normalize(0.5, 0.5)`, pixels in [-1, 1] (the MTP report's CIFAR-100)."""
KERAS_SHIFT = Augment(flip=True, shift=0.1)
"""`aug=shift`: `ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)`,
the Keras augmentation of Li et al. (PRL 2023)."""


@dataclass(frozen=True)
class Options:
    """A family's `?aug=…&norm=…` choices; `crop`/`dataset` are the family's own defaults."""

    aug: str = "crop"
    norm: str = "dataset"

    def augment(self, crop: Augment) -> Augment | None:
        return {"crop": crop, "shift": KERAS_SHIFT, "none": None}[self.aug]

    def stats(self, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
        return (mean, std) if self.norm == "dataset" else (HALF[: len(mean)], HALF[: len(std)])


def parse_options(query: str, family: str) -> Options:
    """`aug=none&norm=half` → Options; any other key or value is one UserError naming the choices."""
    from prunecli.errors import UserError

    values: dict[str, str] = {}
    choices = {"aug": AUGMENTS, "norm": NORMS}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in choices or not eq or value not in choices[key]:
            raise UserError(f"bad {family} option {item!r}; options are aug={'|'.join(AUGMENTS)} "
                            f"and norm={'|'.join(NORMS)}")
        values[key] = value
    return Options(**values)


def split_options(arg: str | None, family: str) -> tuple[str | None, Options]:
    """`DIR?aug=none&norm=half` → (`DIR`, Options); no `?` → (arg, defaults)."""
    if not arg or "?" not in arg:
        return arg, Options()
    head, _, query = arg.rpartition("?")
    return head or None, parse_options(query, family)


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
        self.sharding = None  # set by `shard` (torchrun, --repeated-aug)
        self.batch_weight = 1.0
        """This rank's loss weight for the batch just yielded (prunecli/data/shard.py)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world: int, repeated: bool = False) -> TensorLoader:
        """This rank's part of every global batch (prunecli/data/shard.py); `repeated`: timm's
        repeated-augmentation sampler (training only)."""
        from prunecli.data.shard import Sharding

        part = copy.copy(self)
        part.sharding = Sharding(rank, world, repeated and self.train)
        return part

    def __len__(self) -> int:
        if self.sharding is None:
            return (len(self.labels) + self.batch_size - 1) // self.batch_size
        from prunecli.data.shard import repeated_length

        s = self.sharding
        count = repeated_length(len(self.labels), s) if s.repeated else len(self.labels)
        return len(self._slices(torch.arange(count)))

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        if self.sharding is not None:
            yield from self._sharded(order, gen)
        else:
            for start in range(0, n, self.batch_size):
                yield self._batch(order[start : start + self.batch_size], gen)
        self.epoch += 1

    def _batch(self, idx: torch.Tensor, gen: torch.Generator, drawn: int | None = None, keep=slice(None)):
        """Images `idx`, augmented with the draws for a batch of `drawn` (default len(idx)) of which
        `keep` are these (a rank's slice of the global batch sees the one-process draws)."""
        x = self.images[idx]
        if self.augment.pad or self.augment.flip or self.augment.shift:
            x = _augment(x, self.augment, gen, drawn or len(idx), keep)
        return (x.float() - self.mean) / self.std, self.labels[idx]

    def _slices(self, order: torch.Tensor):
        """(positions into `order`, draws, kept slice, loss weight) of each batch of this rank."""
        from prunecli.data.shard import local_batches, plan

        s = self.sharding
        if s.repeated:
            return [(slice(a, b), b - a, slice(None), 1.0) for a, b in local_batches(len(order), self.batch_size, s)]
        return [(slice(p.lo, p.hi), p.stop - p.start, slice(p.lo - p.start, p.hi - p.start), p.weight)
                for p in plan(len(order), self.batch_size, s.rank, s.world, self.train)]

    def _sharded(self, order: torch.Tensor, gen: torch.Generator):
        from prunecli.data.shard import mix, repeated_order

        s = self.sharding
        if s.repeated:  # its own stream per rank; augmentation seeded per rank (the copies differ)
            indices, _ = repeated_order(len(order), s, mix(self.seed, self.epoch))
            order = torch.as_tensor(indices, dtype=torch.long)
            gen = torch.Generator().manual_seed(mix(self.seed, self.epoch, s.rank, 1))
            for where, _, _, _ in self._slices(order):
                self.batch_weight = 1.0
                yield self._batch(order[where], gen)
            return
        for where, drawn, keep, weight in self._slices(order):
            self.batch_weight = weight
            yield self._batch(order[where], gen, drawn, keep)

    def targets(self) -> torch.Tensor:
        """Every sample's label, in loader order (calibration draws read these, not the images)."""
        return self.labels

    def subset(self, indices: list[int]) -> TensorLoader:
        """A loader over the samples at `indices`, in that order, unshuffled and unaugmented."""
        part = copy.copy(self)
        idx = torch.as_tensor(indices, dtype=torch.long)
        part.images, part.labels = self.images[idx], self.labels[idx]
        part.train, part.augment, part.epoch, part.sharding = False, Augment(), 0, None
        return part


def _augment(x: torch.Tensor, aug: Augment, gen: torch.Generator, drawn: int | None = None,
             keep: slice = slice(None)) -> torch.Tensor:
    """Augment `x`: random draws are made for a batch of `drawn` images (default len(x)) in one
    fixed order, and `x` gets those at `keep` (a rank's slice of the global batch)."""
    n, _, h, w = x.shape
    drawn = drawn or n
    if aug.pad:
        p = aug.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (drawn,), generator=gen)[keep]
        dx = torch.randint(0, 2 * p + 1, (drawn,), generator=gen)[keep]
        rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
        x = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
    if aug.shift:
        x = _shift(x, aug.shift, gen, drawn, keep)
    if aug.flip:
        flip = (torch.rand(drawn, generator=gen) < 0.5)[keep]
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def _shift(x: torch.Tensor, frac: float, gen: torch.Generator, drawn: int | None = None,
           keep: slice = slice(None)) -> torch.Tensor:
    """Keras `ImageDataGenerator(height_shift_range=frac, width_shift_range=frac)`, batched.

    As `keras_preprocessing`'s `get_random_transform` + `apply_affine_transform`: per image a real
    offset t_y ~ U(−frac·H, frac·H) and t_x ~ U(−frac·W, frac·W) (not rounded to pixels), and
    out(i, j) = in(i + t_y, j + t_x) by linear interpolation (scipy `affine_transform`, order 1)
    with fill_mode 'nearest': outside the image the edge pixel is repeated. Returns float pixels.
    """
    n, _, h, w = x.shape
    drawn = drawn or n
    ty = ((torch.rand(drawn, generator=gen) * 2 - 1) * frac * h)[keep]
    tx = ((torch.rand(drawn, generator=gen) * 2 - 1) * frac * w)[keep]
    return _interp(_interp(x.float(), ty, 2), tx, 3)


def _interp(x: torch.Tensor, offset: torch.Tensor, dim: int) -> torch.Tensor:
    """out[..., k, ...] = x at real position k + offset[image] along `dim`, linear, edges clamped."""
    n, size = x.shape[0], x.shape[dim]
    pos = torch.arange(size, dtype=torch.float32).view(1, size) + offset.view(n, 1)
    low = pos.floor()
    weight = pos - low
    shape = [n, 1, 1, 1]
    shape[dim] = size
    index = [low.long().clamp(0, size - 1), (low.long() + 1).clamp(0, size - 1)]
    a, b = (x.gather(dim, i.view(shape).expand_as(x)) for i in index)
    return a + (b - a) * weight.view(shape)
