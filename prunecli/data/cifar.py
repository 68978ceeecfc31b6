"""`cifar10:DIR[?aug=crop&norm=dataset]` and `cifar100:DIR[?…]`: CIFAR from the official python
layout, never downloaded.

DIR is the extracted archive (`cifar-10-batches-py/`, `cifar-100-python/`) or the folder
that holds it. The whole set (180 MB as uint8) is read once, when the first loader is made,
and kept in memory for `TensorLoader`: batched augmentation seeded by (seed, epoch), so a
resumed run sees exactly the same batches. `val` is the official test set.

Options (`prunecli.data.tensor.parse_options`):
- `aug=crop` (default): pad-4 random crop + horizontal flip; `aug=shift`: Keras'
  `ImageDataGenerator` width/height shift 0.1 (real-valued, linear interpolation, edge pixels
  repeated) + horizontal flip, as Li et al. (PRL 2023); `aug=none`: none, as the MTP report
  (its RandomCrop/Flip are commented out).
- `norm=dataset` (default): the training set's per-channel mean/std; `norm=half`:
  Normalize(0.5, 0.5), pixels in [−1, 1], as the MTP report. The chosen mean/std are the
  data set's (`Dataset.mean/std`, recorded in a checkpoint's header).
- `holdout=N`: N seeded training images become the `val` split (selection); train keeps
  50000−N; the official test set is `test` (prunecli/data/holdout.py).

The files are Python pickles because that is the format CIFAR is distributed in; they are
unpickled only here, for this data set. Checkpoints are never unpickled (see io/checkpoint.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunecli.data import Dataset, register_data
from prunecli.errors import UserError


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its files and which label key it uses."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sizes: tuple[int, int]


CIFAR10 = Layout(
    "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
    "batches.meta", b"labels", b"label_names", 10,
    (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (50000, 10000),
)
CIFAR100 = Layout(
    "cifar100", "cifar-100-python", ("train",), "test", "meta", b"fine_labels", b"fine_label_names", 100,
    (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (50000, 10000),
)
DOWNLOAD_HINT = "get the python version from https://www.cs.toronto.edu/~kriz/cifar.html and extract it"


def find_root(arg: str | None, layout: Layout) -> Path:
    """The folder holding the batch files: DIR itself, or DIR/<official folder name>."""
    if not arg:
        raise UserError(f"the `{layout.name}` data spec needs a folder: {layout.name}:DIR",
                        hint=DOWNLOAD_HINT)
    given = Path(arg).expanduser()
    if not given.is_dir():
        raise UserError(f"{layout.name}: folder not found: {given}", hint=DOWNLOAD_HINT)
    for root in (given, given / layout.folder):
        if (root / layout.test).is_file() or (root / layout.train[0]).is_file():
            missing = [f for f in (*layout.train, layout.test, layout.meta) if not (root / f).is_file()]
            if missing:
                raise UserError(f"{layout.name}: {root} lacks {', '.join(missing)}", hint=DOWNLOAD_HINT)
            return root
    raise UserError(
        f"{layout.name}: no CIFAR batch files in {given} or {given / layout.folder} "
        f"(expected {layout.train[0]} and {layout.test})", hint=DOWNLOAD_HINT)


def _unpickle(path: Path) -> dict:
    """One batch file. pickle is CIFAR's official distribution format; only these files are unpickled."""
    import pickle

    try:
        with open(path, "rb") as fh:
            doc = pickle.load(fh, encoding="bytes")  # noqa: S301 - the data set's own format
    except Exception as err:  # a truncated or foreign file raises many different types
        raise UserError(f"cannot read CIFAR file {path}: {type(err).__name__}: {err}") from None
    if not isinstance(doc, dict):
        raise UserError(f"CIFAR file {path} does not hold a dict of arrays")
    return doc


def _batch(path: Path, layout: Layout):
    """(uint8 N×3×32×32, int64 N) tensors from one batch file."""
    import numpy as np
    import torch

    doc = _unpickle(path)
    if b"data" not in doc or layout.label_key not in doc:
        raise UserError(f"CIFAR file {path} lacks the {b'data'!r} or {layout.label_key!r} entry")
    try:
        data = np.asarray(doc[b"data"], dtype=np.uint8)
        labels = np.asarray(doc[layout.label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:  # strings, ragged lists, objects
        raise UserError(f"CIFAR file {path}: data and labels must be arrays of integers "
                        f"({type(err).__name__}: {str(err)[:120]})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise UserError(f"CIFAR file {path}: unexpected data shape {data.shape} for {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise UserError(f"CIFAR file {path}: labels outside 0..{layout.num_classes - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def read_split(root: Path, layout: Layout, split: str):
    """All batches of one split, concatenated."""
    import torch

    files = layout.train if split == "train" else (layout.test,)
    parts = [_batch(root / f, layout) for f in files]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def class_names(root: Path, layout: Layout) -> list[str]:
    """Human class names from the meta file (used by `prunecli ls`-style reports and tests)."""
    names = _unpickle(root / layout.meta).get(layout.names_key, [])
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]



def make_dataset(arg: str | None, layout: Layout) -> Dataset:
    """Check the files now (a clear error before any training starts); read them on first use."""
    from prunecli.data.holdout import take_holdout
    from prunecli.data.tensor import Augment, TensorLoader, split_options

    arg, holdout = take_holdout(arg, layout.name)
    arg, opts = split_options(arg, layout.name)
    root = find_root(arg, layout)
    mean, std = opts.stats(layout.mean, layout.std)
    augment = opts.augment(Augment(pad=4, flip=True))
    cache: dict = {}
    sizes = {"train": layout.sizes[0] - holdout, "val": layout.sizes[1]}
    if holdout:
        sizes["holdout"] = holdout

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if split not in cache:
            cache.update(_read(root, layout, "val" if split == "val" else "train", holdout))
            sizes.update({k: len(v[1]) for k, v in cache.items()})  # the real counts (a fake set may differ)
        x, y = cache[split]
        return TensorLoader(x, y, batch_size, mean, std, train=train, augment=augment, seed=seed)

    return Dataset(layout.name, layout.num_classes, (3, 32, 32), mean, std, make_loader, sizes=sizes,
                   holdout=holdout)


def _read(root: Path, layout: Layout, split: str, holdout: int) -> dict:
    """{split: tensors}; the train files give `train` and, with `holdout=N`, `holdout` (data/holdout.py)."""
    x, y = read_split(root, layout, split)
    if split != "train" or not holdout:
        return {split: (x, y)}
    from prunecli.data.holdout import carve

    keep, held = carve(len(y), holdout, layout.name)
    return {"train": (x[keep], y[keep]), "holdout": (x[held], y[held])}


@register_data("cifar10", usage="cifar10:DIR[?aug=crop|shift|none&norm=dataset|half&holdout=N]",
               description="CIFAR-10 python batches; DIR = cifar-10-batches-py or its parent; 50000/10000")
def cifar10(arg: str | None) -> Dataset:
    return make_dataset(arg, CIFAR10)


@register_data("cifar100", usage="cifar100:DIR[?aug=crop|shift|none&norm=dataset|half&holdout=N]",
               description="CIFAR-100, fine labels; DIR = cifar-100-python or its parent; 50000/10000")
def cifar100(arg: str | None) -> Dataset:
    return make_dataset(arg, CIFAR100)
