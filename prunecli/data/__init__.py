"""Data registry: a spec string `name[:ARG]` → a `Dataset` bundle with train/val loaders.

Specs: `digits[?…]` (offline default), `synthetic[:k=v,...]`, `cifar10:DIR[?…]`, `cifar100:DIR[?…]`
(`?aug=crop|shift|none&norm=dataset|half`, prunecli/data/tensor.py),
`imagefolder:DIR`, `ham10000:DIR` (skin lesions, lesion-grouped split), and for multi-coil MRI
reconstruction (task "reconstruction", prunecli/data/mri.py) `phantom[:k=v,...]` (offline
simulated phantoms) and `fastmri:DIR[?k=v&...]` (fastMRI brain multi-coil, split by file).
Each family file registers a factory `fn(arg: str | None) -> Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prunecli.errors import UserError
from prunecli.registry import Registry


class Loader(Protocol):
    def __iter__(self) -> Iterable[tuple[Any, Any]]: ...
    def __len__(self) -> int: ...
    def targets(self) -> Any:
        """Every sample's label (a sequence), or None for unlabelled (reconstruction) data."""
    def subset(self, indices: list[int]) -> Loader:
        """The samples at `indices`, in that order, unshuffled (calibration draws)."""


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
    preprocess: dict[str, Any] | None = None
    """A model's own evaluation preprocessing (timm's data config: input_size, interpolation,
    crop_pct, crop_mode, mean, std). File-based sets (imagefolder) apply it to the val split;
    in-memory sets (CIFAR, digits) are already at their model's resolution and ignore it."""
    applies_preprocess: bool = False
    resize: Callable[[tuple[int, int]], Dataset] | None = field(default=None, repr=False)
    """Families whose resolution follows the model (file-based sets whose spec gives no `?size=N`)
    set this: the same data at another (height, width). None: the resolution is fixed (in-memory
    sets, or the spec said `?size=N`)."""
    transform: str = ""
    """What the loaders do to an image, in words (the line `for_input` prints)."""

    def for_input(self, input_shape) -> Dataset:
        """This data at the model's input size (`(C, H, W)`, the registry entry's or the
        checkpoint's), when the family lets the model choose; else itself, unchanged.

        Commands call it once, right after building the data from the model or checkpoint
        they use, so the loaders are made at the size the model works at (a 32×32 ResNet-20
        never sees 224×224 upsampled images); the data registry never imports a model."""
        if self.resize is None or len(input_shape) != 3:
            return self
        sized = self.resize((int(input_shape[1]), int(input_shape[2])))
        sized.spec, sized.preprocess = self.spec, self.preprocess
        return sized
    # timm training augmentation and held-out validation (issue 13; data/timm_aug.py, data/holdout.py)
    train_aug: dict[str, Any] | None = None
    """timm `create_transform` options for the train split (--randaugment/--reprob), set by fit;
    only families with `supports_train_aug` (per-sample decoding) take them."""
    supports_train_aug: bool = False
    holdout: int = 0
    """`holdout=N`: the family carved N training images into a `holdout` split, which `val` means."""
    # MRI test split (issue 15: phantom `test=N`, fastmri `split=T/V/S`; prunecli/data/mri.py)
    own_test: bool = False
    """The family keeps a `test` split of its own, apart from val (MRI, by volume): `test` means it."""
    volumes: dict[str, int] | None = None
    """Volumes (patients/files) per split, where samples are slices of volumes (MRI)."""

    def loader(
        self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, workers: int = 0
    ) -> Loader:
        """Batches of normalised (x, y); `train` shuffles and augments, deterministically from `seed`.

        `split` is `train`, `val` (the holdout when the spec has `holdout=N`, else the data set's
        own validation/test split) or `test` (always the data set's own; MRI data: its own test
        volumes, apart from val); see `split_name`.
        """
        extra: dict[str, Any] = {}
        if train and self.train_aug:
            if not self.supports_train_aug:
                raise UserError(f"--randaugment/--reprob work on per-image data (imagefolder, ham10000); "
                                f"{self.spec} is augmented as whole tensors (its ?aug= option)")
            extra["train_aug"] = self.train_aug
        return self.make_loader(split_name(split, self.holdout, self.own_test), batch_size, train=train, seed=seed,
                                workers=workers, preprocess=self.preprocess, **extra)


def split_name(split: str, holdout: int = 0, own_test: bool = False) -> str:
    """The family's split behind a user's: `val` is the holdout when there is one, `test` the own val
    (or the family's own test split, `own_test`)."""
    if split == "val":
        return "holdout" if holdout else "val"
    if split == "test":
        return "test" if own_test else "val"
    if split == "train":
        return "train"
    raise UserError(f"unknown split {split!r}; use train, val or test")


@dataclass(frozen=True)
class DataEntry:
    name: str
    factory: Callable[[str | None], Dataset]
    usage: str
    description: str


_FAMILIES = ("digits", "synthetic", "cifar", "imagefolder", "ham10000", "mri")
DATASETS: Registry[DataEntry] = Registry("data", tuple(f"prunecli.data.{f}" for f in _FAMILIES))


def register_data(name: str, usage: str, description: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        DATASETS.add(name, DataEntry(name, fn, usage, description))
        return fn

    return deco


def list_data() -> list[DataEntry]:
    return [e for _, e in DATASETS.items()]


def build_data(spec: str) -> Dataset:
    """Parse `name[:ARG]` and build the data set (no data is read until a loader iterates).

    `name?OPTIONS` (no `:`) passes `?OPTIONS` as the argument: `digits?aug=none&norm=half`."""
    name, colon, arg = spec.partition(":")
    if not colon and "?" in name:
        name, _, query = name.partition("?")
        arg = "?" + query
    if not name:
        raise UserError(f"empty data spec {spec!r}; try `digits` or `cifar10:DIR`")
    dataset = DATASETS.get(name).factory(arg or None)
    dataset.spec = spec
    return dataset
