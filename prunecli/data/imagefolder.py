"""`imagefolder:DIR[?size=N]`: ImageNet-style folders (`DIR/train/<class>/*.jpg`, `DIR/val/...`).

Images are decoded by torchvision's `ImageFolder`. The input size N×N is `?size=N` when the
spec gives it; otherwise it follows the model (`Dataset.for_input`: the registry entry's
`input_shape`, timm's `pretrained_cfg` input size, or a checkpoint's recorded `input_shape`),
224 when no model is known. Transforms by size (`transforms`):

- above 64 px, the ImageNet recipe: train RandomResizedCrop(N) + horizontal flip, val
  Resize(N·256/224) + CenterCrop(N);
- up to 64 px (CIFAR's 32, Tiny-ImageNet's 64: `SMALL`), the CIFAR recipe: every image is first
  brought to N (shorter side resized to N, centre crop; a no-op for files already N×N), then train
  adds a zero-padded random crop (padding N/8, 4 px at 32) + horizontal flip, val nothing more.
  RandomResizedCrop would keep as little as 8% of a 32-px image and blow it up, and resizing
  small images to 224 costs ~50× the compute for no information.

Classes are the sub-folder names, sorted; train/ and val/ must agree.

Determinism for exact resume: the loader's `set_epoch(e)` fixes the shuffling (a generator
seeded by (seed, epoch)) and every sample's augmentation (the torch RNG is seeded by
(seed, epoch, index) around its transform). So the batches depend on (seed, epoch) only,
not on the number of worker processes or on what ran before.
"""

from __future__ import annotations

from pathlib import Path

from prunecli.data import Dataset, register_data
from prunecli.data.images import BadImage, UnreadableImage, check_batch, collate, open_rgb, report_skipped
from prunecli.data.shard import mix as _mix
from prunecli.errors import UserError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def parse_spec(arg: str | None) -> tuple[Path, int | None]:
    """`DIR` or `DIR?size=N` → (DIR, N); N is None when not given (the model decides)."""
    if not arg:
        raise UserError("the `imagefolder` data spec needs a folder: imagefolder:DIR[?size=N]")
    path, sep, query = arg.rpartition("?")
    if not sep:
        return Path(arg).expanduser(), None
    size = None
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key != "size" or not eq:
            raise UserError(f"bad imagefolder option {item!r}; the only option is size=N")
        size = parse_size(value, "imagefolder")
    return Path(path).expanduser(), size


def parse_size(value: str, family: str) -> int:
    """A `size=N` option's value: an integer in 8..4096 (shared by the file-based families)."""
    if not value.isdigit() or not 8 <= int(value) <= 4096:
        raise UserError(f"{family} size must be an integer in 8..4096, got {value!r}")
    return int(value)


def class_folders(split_dir: Path) -> list[str]:
    """Sorted class names of one split (cheap: lists one directory, no image is opened)."""
    if not split_dir.is_dir():
        raise UserError(f"imagefolder: missing folder {split_dir} (expected DIR/train and DIR/val)")
    classes = sorted(e.name for e in split_dir.iterdir() if e.is_dir())  # as torchvision's find_classes
    if not classes:
        raise UserError(f"imagefolder: {split_dir} has no class sub-folders")
    return classes


def check_classes(root: Path) -> list[str]:
    """The class list, after checking that train/ and val/ name the same classes."""
    if not root.is_dir():
        raise UserError(f"imagefolder: folder not found: {root}")
    train, val = class_folders(root / "train"), class_folders(root / "val")
    if train != val:
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        raise UserError(f"imagefolder: train/ and val/ classes differ (only in train: {only_train[:5]}, "
                        f"only in val: {only_val[:5]})")
    return train


def transforms(size: int | tuple[int, int], train: bool):
    """The family's own transform at `size` (N or (H, W)); small inputs get the CIFAR recipe."""
    from torchvision import transforms as T

    if is_small(size):
        return small_transforms(hw(size), train)
    if train:
        steps = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(round(min(hw(size)) * 256 / 224)), T.CenterCrop(size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


# --- topic `input size` (issue 14): the size follows the model, small images train as CIFAR ---

DEFAULT_SIZE = 224
SMALL = 64
"""Inputs whose larger side is at most SMALL px train with a padded random crop (module doc)."""


def hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def is_small(size: int | tuple[int, int]) -> bool:
    return max(hw(size)) <= SMALL


def small_transforms(size: tuple[int, int], train: bool):
    """Bring the image to `size` (shorter side, centre crop; no-op at that size), then train:
    zero-padded random crop (padding min(H, W)/8) + flip; val: nothing more."""
    from torchvision import transforms as T

    steps = [T.Resize(min(size)), T.CenterCrop(size)]
    if train:
        steps += [T.RandomCrop(size, padding=max(1, min(size) // 8)), T.RandomHorizontalFlip()]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def describe(size: int | tuple[int, int], source: str) -> str:
    """The resolved input size and the transforms, in one line (printed once per command)."""
    h, w = hw(size)
    if is_small(size):
        how = (f"train: resize to {h}×{w} if needed, random crop with {max(1, min(h, w) // 8)}-px padding + "
               f"flip; val: resize to {h}×{w} if needed")
    else:
        how = f"train: RandomResizedCrop {h}×{w} + flip; val: resize {round(min(h, w) * 256 / 224)} + centre crop"
    return f"input {h}×{w} ({source}); {how}"


def model_transform(cfg: dict):
    """A model's own eval preprocessing (timm: resize by crop_pct with its interpolation — bicubic
    for ViTs —, centre crop to input_size, its mean/std), so numbers compare with published ones."""
    from timm.data import create_transform

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return create_transform(**{k: cfg[k] for k in keys if k in cfg}, is_training=False)


class SeededSamples:
    """Wraps a torchvision data set; sample i of epoch e is augmented with seed (seed, e, i).

    An index may come as (i, copy) from repeated augmentation: each copy gets its own seed."""

    def __init__(self, base, seed: int, all_rngs: bool = False):
        self.base, self.seed, self.epoch = base, seed, 0
        self.all_rngs = all_rngs  # timm's transforms also draw from `random`/numpy (data/timm_aug.py)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        import torch

        from prunecli.data.timm_aug import python_rngs

        index, *copy = index if isinstance(index, tuple) else (index,)
        seed = _mix(self.seed, self.epoch, index, *copy)
        # leave the caller's RNG streams untouched
        with torch.random.fork_rng(devices=[]), python_rngs(seed, self.all_rngs):
            torch.manual_seed(seed)
            try:
                return self.base[index]
            except UnreadableImage as bad:  # decided in the main process (prunecli/data/images.py)
                return BadImage(bad.path, bad.reason)


class ShardBatches:
    """Batch sampler of one rank (prunecli/data/shard.py): the global batches drawn as a shuffling
    DataLoader draws them (RandomSampler on the loader's generator), then this rank's slice; or
    timm's repeated-augmentation stream in local batches."""

    def __init__(self, owner: FolderLoader):
        self.owner = owner

    def parts(self) -> list:
        from prunecli.data.shard import local_batches, plan

        o, s = self.owner, self.owner.sharding
        n = len(o.samples)
        if s.repeated:
            return local_batches(o.repeated_count(), o.batch_size, s)
        return plan(n, o.batch_size, s.rank, s.world, o.train)

    def __len__(self) -> int:
        return len(self.parts())

    def __iter__(self):
        from torch.utils.data import RandomSampler

        from prunecli.data.shard import mix, repeated_order

        o, s = self.owner, self.owner.sharding
        if s.repeated:
            indices, positions = repeated_order(len(o.samples), s, mix(o.seed, o.epoch))
            for a, b in self.parts():
                yield list(zip(indices[a:b], positions[a:b], strict=True))
            return
        order = list(RandomSampler(o.samples, generator=o.generator)) if o.train else range(len(o.samples))
        for part in self.parts():
            yield list(order[part.lo:part.hi])


class FolderLoader:
    """A DataLoader whose order and augmentation are fixed by (seed, epoch); see module doc."""

    def __init__(self, base, batch_size: int, *, train: bool, seed: int, workers: int, all_rngs: bool = False):
        import torch

        self.samples = SeededSamples(base, seed, all_rngs)
        self.seed, self.epoch, self.train, self.batch_size = seed, 0, train, batch_size
        self.generator = torch.Generator()
        self.sharding = None  # set by `shard` (torchrun, --repeated-aug)
        self.batch_weight = 1.0
        self.workers = workers
        self.loader = self._loader()
        self.skipped: dict[str, str] = {}

    def _loader(self, batch_sampler=None):
        import torch
        from torch.utils.data import DataLoader

        if batch_sampler is not None:
            return DataLoader(self.samples, batch_sampler=batch_sampler, num_workers=self.workers,
                              pin_memory=torch.cuda.is_available(), generator=self.generator, collate_fn=collate)
        return DataLoader(
            self.samples, batch_size=self.batch_size, shuffle=self.train, num_workers=self.workers,
            pin_memory=torch.cuda.is_available(), generator=self.generator, drop_last=False,
            collate_fn=collate,
        )

    def shard(self, rank: int, world: int, repeated: bool = False) -> FolderLoader:
        """This rank's part of every global batch, or timm's repeated-augmentation stream
        (prunecli/data/shard.py)."""
        import copy

        from prunecli.data.shard import Sharding

        part = copy.copy(self)
        part.sharding = Sharding(rank, world, repeated and self.train)
        part.skipped = {}
        part.loader = part._loader(ShardBatches(part))
        return part

    def repeated_count(self) -> int:
        """Length of this rank's repeated-augmentation stream (timm's num_selected_samples)."""
        from prunecli.data.shard import repeated_length

        return repeated_length(len(self.samples), self.sharding)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        # The generator drives the sampler's permutation and the workers' base seed.
        self.generator.manual_seed(_mix(self.seed, self.epoch))
        self.samples.epoch = self.epoch
        sampler = self.loader.batch_sampler
        weights = [getattr(p, "weight", 1.0) for p in sampler.parts()] if isinstance(sampler, ShardBatches) else None
        read = 0
        for i, (x, y, bad) in enumerate(self.loader):
            if bad:
                check_batch(bad, self.samples.base, self.skipped)
            if x is not None:
                read += len(y)
                self.batch_weight = weights[i] if weights else 1.0
                yield x, y
        report_skipped(self.skipped, read)
        self.epoch += 1

    def targets(self) -> list[int]:
        """Every sample's label from the file list (ImageFolder and HAM10000 keep (path, label)
        pairs), so a calibration draw opens only the images it uses."""
        return [label for _, label in self.samples.base.samples]

    def subset(self, indices: list[int]) -> FolderLoader:
        """A loader over the samples at `indices`, in that order, unshuffled, with this loader's
        transform (call it on a `train=False` loader for the evaluation transform)."""
        from torch.utils.data import Subset

        return FolderLoader(Subset(self.samples.base, indices), self.batch_size, train=False,
                            seed=self.seed, workers=self.workers)



@register_data("imagefolder", usage="imagefolder:DIR[?size=N&holdout=N]",
               description="DIR/{train,val}/<class>/*, at the model's input size unless ?size=N; "
                           "padded crop up to 64 px, ImageNet's above")
def imagefolder(arg: str | None) -> Dataset:
    from prunecli.data.holdout import take_holdout

    arg, holdout = take_holdout(arg, "imagefolder")
    root, size = parse_spec(arg)
    classes = check_classes(root)
    if size is not None:
        return _folder(root, classes, (size, size), "?size=N", fixed=True, holdout=holdout)
    return _folder(root, classes, (DEFAULT_SIZE, DEFAULT_SIZE), "default: no model given", fixed=False,
                   holdout=holdout)


def _folder(root: Path, classes: list[str], size: tuple[int, int], source: str, *, fixed: bool,
            holdout: int = 0) -> Dataset:
    """The data set at `size`; unless `fixed` (`?size=N`), `resize` remakes it at the model's size."""
    cache: dict = {}
    sizes: dict[str, int] = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None, train_aug=None):
        from torchvision.datasets import ImageFolder

        model_cfg = None if train else preprocess
        key = (split, train, repr(sorted((model_cfg or {}).items())), repr(train_aug))
        if key not in cache:  # scanning a large tree takes seconds: once per (split, transform)
            transform = model_transform(model_cfg) if model_cfg else transforms(size, train)
            if train_aug:  # --randaugment/--reprob: timm's training transform instead
                from prunecli.data.timm_aug import train_transform

                transform = train_transform(size, MEAN, STD, train_aug)
            folder = "val" if split == "val" else "train"
            try:
                cache[key] = ImageFolder(str(root / folder), transform=transform, loader=open_rgb,
                                         is_valid_file=_is_image)
            except FileNotFoundError as err:
                raise UserError(f"imagefolder: {err}") from None
            if holdout and split != "val":
                from prunecli.data.holdout import carve, restrict

                parts = dict(zip(("train", "holdout"), carve(len(cache[key]), holdout, "imagefolder")))
                cache[key] = restrict(cache[key], parts[split])
            sizes[split] = len(cache[key])
        return FolderLoader(cache[key], batch_size, train=train, seed=seed, workers=workers,
                            all_rngs=bool(train_aug))

    def resize(shape: tuple[int, int]) -> Dataset:
        return _folder(root, classes, shape, "the model's input size", fixed=False, holdout=holdout)

    return Dataset("imagefolder", len(classes), (3, *size), MEAN, STD, make_loader, sizes=sizes,
                   applies_preprocess=True, resize=None if fixed else resize,
                   transform=describe(size, source), supports_train_aug=True, holdout=holdout)


def _is_image(path: str) -> bool:
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)
