"""Data registry: a spec string `name[:ARG]` → a `Dataset` bundle with train/val loaders.

Specs: `digits` (offline default), `synthetic[:k=v,...]`, `cifar10:DIR`, `cifar100:DIR`,
`imagefolder:DIR`. Each family file registers a factory `fn(arg: str | None) -> Dataset`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prunecli.errors import UserError
from prunecli.registry import Registry


class Loader(Protocol):
    def __iter__(self) -> Iterable[tuple[Any, Any]]: ...
    def __len__(self) -> int: ...


@dataclass
class Dataset:
    """What commands need to know about a data set, plus a way to make loaders."""

    spec: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    make_loader: Callable[..., Loader] = field(repr=False)
    sizes: dict[str, int] = field(default_factory=dict)
    task: str = "classification"

    def loader(
        self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, workers: int = 0
    ) -> Loader:
        """Batches of normalised (x, y); `train` shuffles and augments, deterministically from `seed`."""
        return self.make_loader(split, batch_size, train=train, seed=seed, workers=workers)


@dataclass(frozen=True)
class DataEntry:
    name: str
    factory: Callable[[str | None], Dataset]
    usage: str
    description: str


DATASETS: Registry[DataEntry] = Registry("data")
_FAMILIES = ("digits", "synthetic", "cifar", "imagefolder")
_loaded = False


def register_data(name: str, usage: str, description: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        DATASETS.add(name, DataEntry(name, fn, usage, description))
        return fn

    return deco


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for fam in _FAMILIES:
            importlib.import_module(f"prunecli.data.{fam}")


def list_data() -> list[DataEntry]:
    _load_families()
    return [e for _, e in DATASETS.items()]


def build_data(spec: str) -> Dataset:
    """Parse `name[:ARG]` and build the data set (no data is read until a loader iterates)."""
    _load_families()
    name, _, arg = spec.partition(":")
    if not name:
        raise UserError(f"empty data spec {spec!r}; try `digits` or `cifar10:DIR`")
    dataset = DATASETS.get(name).factory(arg or None)
    dataset.spec = spec
    return dataset
