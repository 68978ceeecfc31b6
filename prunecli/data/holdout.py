"""`holdout=N`: a seeded validation split of N training images (cifar10/100, imagefolder, ham10000).

The papers select their epoch (and report) on the data set's test/val split; with `holdout=N` a
run selects on N images carved out of train (train keeps the rest) and reports on the untouched
test split (`evaluate --split test`). Which images are held out depends on N and the training
set only — a fixed generator, not `--seed` — so runs with different seeds select on the same
images and compare. The option is taken out of the spec's query here, before the family parses
the rest, so families need no knowledge of it beyond carving.
"""

from __future__ import annotations

import random

from prunecli.errors import UserError

SEED = 0
"""The holdout's own seed: fixed, so every run of a data set holds out the same images."""


def take_holdout(arg: str | None, family: str) -> tuple[str | None, int]:
    """`DIR?size=64&holdout=5000` → (`DIR?size=64`, 5000); (arg, 0) without the option."""
    if not arg or "?" not in arg:
        return arg, 0
    head, _, query = arg.rpartition("?")
    keep, n = [], 0
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "holdout":
            keep.append(item)
            continue
        if not value.isdigit() or int(value) < 1:
            raise UserError(f"{family} holdout must be a positive number of images, got {value!r}")
        n = int(value)
    return (f"{head}?{'&'.join(keep)}" if keep else head) or None, n


def carve(count: int, n: int, family: str) -> tuple[list[int], list[int]]:
    """(train indices, holdout indices) of `count` training samples, `n` held out, both sorted."""
    if n >= count:
        raise UserError(f"{family} holdout={n} leaves no training images (train has {count})")
    order = list(range(count))
    random.Random(SEED).shuffle(order)
    return sorted(order[n:]), sorted(order[:n])


def carve_groups(groups: list[str], n: int, family: str) -> tuple[list[int], list[int]]:
    """As `carve`, but samples of one group (a HAM10000 lesion) stay on one side: whole groups in a
    seeded order are held out while they fit, so the holdout has n images, or fewer when no
    remaining group fits exactly."""
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    if n >= len(groups):
        raise UserError(f"{family} holdout={n} leaves no training images (train has {len(groups)})")
    order = sorted(members)
    random.Random(SEED).shuffle(order)
    held: list[int] = []
    for group in order:
        if len(held) + len(members[group]) <= n:
            held += members[group]
        if len(held) == n:
            break
    chosen = set(held)
    return [i for i in range(len(groups)) if i not in chosen], sorted(held)


def restrict(folder, indices: list[int]):
    """A copy of a torchvision ImageFolder (or HAM10000's LesionImages) holding only `indices`;
    its `samples` list stays a real list, which the loaders' label and bad-file checks read."""
    import copy

    part = copy.copy(folder)
    part.samples = [folder.samples[i] for i in indices]
    if hasattr(folder, "targets"):
        part.targets = [label for _, label in part.samples]
    if hasattr(folder, "imgs"):
        part.imgs = part.samples
    return part
