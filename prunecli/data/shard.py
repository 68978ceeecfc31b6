"""How a loader splits its batches across torchrun processes, and repeated augmentation.

Sharding keeps the one-process sample stream: the loader draws the *global* batch exactly as a
single process would (same permutation, same augmentation draws, seeded by (seed, epoch)), and
rank r keeps its contiguous slice of it (`bounds`). The ranks together therefore see exactly the
samples and augmentations of the one-process run with the same `--batch-size`, and `--resume`
stays exact for any number of processes.

A last, partial global batch may not split evenly (say 5 samples over 2 ranks: 3 + 2). Each
rank's mean loss is then weighted by `local·world/global` (`Slice.weight`; the training loop
multiplies by it), so that DistributedDataParallel's gradient average is the gradient of the
global batch's mean loss, as in one process. In training, a last global batch with fewer
samples than ranks is dropped (a rank would get nothing to step on); evaluation keeps it, and a
rank with an empty slice simply has nothing to add to the all-reduced sums.

Repeated augmentation (`--repeated-aug`, Hoffer et al. 2020 / DeiT) is timm's
`RepeatAugSampler`, used as is: every sample is repeated 3 times, the repeated list is dealt
round-robin to the ranks (so the copies of a sample land on different ranks, or, in one
process, side by side), and each rank takes `len(data)/world` of it (rounded down to 256s when
there are at least 256 samples). It changes the sample stream by design. Each copy is augmented
with its own seed: its position in the repeated list, with (seed, epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

REPEATS = 3


@dataclass(frozen=True)
class Slice:
    """Positions [lo, hi) of this rank's part of one global batch, in the epoch's sample order."""

    lo: int
    hi: int
    start: int
    """First position of the global batch (its draws of augmentation cover start..stop)."""
    stop: int
    weight: float = 1.0


def bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous part [lo, hi) of `size` items split as evenly as possible (the
    first `size % world` ranks get one more)."""
    base, extra = divmod(size, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def plan(count: int, batch_size: int, rank: int, world: int, train: bool) -> list[Slice]:
    """This rank's slices of the global batches of an epoch over `count` samples."""
    out = []
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        size = stop - start
        if train and size < world:
            continue  # see module doc: every rank must take part in each training step
        lo, hi = bounds(size, rank, world)
        if not train and hi == lo:
            continue
        out.append(Slice(start + lo, start + hi, start, stop, (hi - lo) * world / size))
    return out


@dataclass(frozen=True)
class Sharding:
    """A loader's place in the job: rank, world, and whether it repeats samples (training only)."""

    rank: int = 0
    world: int = 1
    repeated: bool = False


def _sampler(count: int, sharding: Sharding, shuffle: bool):
    from timm.data.distributed_sampler import RepeatAugSampler

    return RepeatAugSampler(range(count), num_replicas=sharding.world, rank=sharding.rank, shuffle=shuffle,
                            num_repeats=REPEATS)


def repeated_length(count: int, sharding: Sharding) -> int:
    """Samples per epoch on each rank under repeated augmentation (timm's num_selected_samples)."""
    return len(_sampler(count, sharding, True))


def repeated_order(count: int, sharding: Sharding, seed_epoch: int, shuffle: bool = True):
    """timm's `RepeatAugSampler` stream for this rank: (sample indices, positions in the repeated
    list). The position tells the copies of one sample apart (their augmentation seeds)."""
    sampler = _sampler(count, sharding, shuffle)
    sampler.set_epoch(seed_epoch)
    indices = list(sampler)
    positions = list(range(sharding.rank, sampler.total_size, sharding.world))[: len(indices)]
    return indices, positions


def local_batches(count: int, batch_size: int, sharding: Sharding) -> list[tuple[int, int]]:
    """[start, stop) over a rank's own (repeated-augmentation) stream of `count` samples, in local
    batches of `batch_size / world` (all ranks have equally long streams)."""
    local = batch_size // sharding.world
    return [(s, min(count, s + local)) for s in range(0, count, local)]


def mix(*parts: int) -> int:
    """A 63-bit seed from several integers (distinct tuples give unrelated seeds)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h
