"""`ham10000:DIR[?size=N&test=F&seed=S]`: HAM10000 dermatoscopic images, 7 diagnoses.

DIR holds `HAM10000_metadata.csv` (columns lesion_id, image_id, dx, ...) and the
`ISIC_xxxxxxx.jpg` images, directly or in sub-folders (`HAM10000_images_part_1/`, `..._2/`);
images are found by one recursive scan, matched on the file stem (a duplicate copy of the
same image, as in some downloads, resolves to the first path in sorted order).

Classes are the 7 dx codes, sorted and fixed (akiec, bcc, bkl, df, mel, nv, vasc), so a
class index never depends on which files are present; another dx is an error.

Split: HAM10000 has no official test set, so this makes a fixed **lesion-grouped, stratified**
one. A lesion (one lesion_id, one dx) often has several images; all of them land on the same
side, so near-duplicate photos of one lesion never sit in both train and test. Per class, the
lesions are sorted by id (the CSV's row order does not matter), shuffled by a generator seeded
by (`seed`, class) and the first round(test·n) of them, at least 1 and at most n−1 when the
class has n ≥ 2 lesions, become the test split (default test=0.2, seed=0); a class with a single
lesion keeps it in train. `val` is that test split. `seed` here fixes the split only; training's
`--seed` fixes shuffling and augmentation; `holdout=N` carves about N training images, whole
lesions, into the `val` split used for selection (`test` is then the split above; data/holdout.py) (the loader's determinism is imagefolder's: batches
depend on (seed, epoch) only, see prunecli/data/imagefolder.py).

Transforms follow the MTP report (Akhtar & Bathula 2023, tauqeer112/MTP_Pruning): resize to
N×N (N = `?size=N`, else the model's input size as imagefolder's (`Dataset.for_input`), 224 when
no model is known; the 600×450 images are squashed, not cropped), ImageNet mean/std;
train adds random horizontal and vertical flips. The report's code applied the same random flips
to its test set too; here the test split is only resized, so evaluation is deterministic. (The
report also split by CSV row, first 7000 rows train, without lesion grouping.) A model's own
preprocessing (timm's data config) is not applied: only its input size is.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from prunecli.data import Dataset, register_data
from prunecli.data.imagefolder import MEAN, STD, FolderLoader, _mix, parse_size
from prunecli.data.images import open_rgb
from prunecli.errors import UserError

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
METADATA = "HAM10000_metadata.csv"
REQUIRED = ("lesion_id", "image_id", "dx")
USAGE = "ham10000:DIR[?size=N&test=0.2&seed=0&holdout=N]"


@dataclass(frozen=True)
class Options:
    root: Path
    size: int | None = None
    """None: the model's input size (224 without a model)."""
    test: float = 0.2
    seed: int = 0


def parse_spec(arg: str | None) -> Options:
    """`DIR[?size=N&test=F&seed=S]` → Options."""
    if not arg:
        raise UserError(f"the `ham10000` data spec needs a folder: {USAGE}")
    path, sep, query = arg.rpartition("?")
    if not sep:
        return Options(Path(arg).expanduser())
    values: dict = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in ("size", "test", "seed") or not eq:
            raise UserError(f"bad ham10000 option {item!r}; options are size=N, test=F, seed=S, holdout=N")
        if key == "size":
            values["size"] = parse_size(value, "ham10000")
        elif key == "test":
            try:
                test = float(value)
            except ValueError:
                test = math.nan
            if not 0 < test < 1:
                raise UserError(f"ham10000 test must be a fraction strictly between 0 and 1, got {value!r}")
            values["test"] = test
        else:
            if not value.isdigit():
                raise UserError(f"ham10000 seed must be a non-negative integer, got {value!r}")
            values["seed"] = int(value)
    return Options(Path(path).expanduser(), **values)


def read_metadata(csv_path: Path) -> list[tuple[str, str, int]]:
    """(image_id, lesion_id, class index) per row, checked: required columns, known dx, one dx per lesion."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in columns]
            if missing:
                raise UserError(f"ham10000: {csv_path} lacks column(s) {', '.join(missing)} "
                                f"(has: {', '.join(columns[:10]) or 'none'})")
            reader.fieldnames = columns
            rows = []
            lesion_dx: dict[str, str] = {}
            seen: set[str] = set()
            for row in reader:
                lesion, image, dx = (str(row[c] or "").strip() for c in REQUIRED)
                where = f"{csv_path.name} line {reader.line_num}"
                if not image or not lesion:
                    raise UserError(f"ham10000: empty image_id or lesion_id at {where}")
                if dx not in CLASSES:
                    raise UserError(f"ham10000: unknown diagnosis {dx!r} for {image} ({where}); "
                                    f"expected one of {', '.join(CLASSES)}")
                if lesion_dx.setdefault(lesion, dx) != dx:
                    raise UserError(f"ham10000: lesion {lesion} has two diagnoses, "
                                    f"{lesion_dx[lesion]} and {dx} ({where})")
                if image in seen:
                    raise UserError(f"ham10000: image {image} is listed twice ({where})")
                seen.add(image)
                rows.append((image, lesion, CLASSES.index(dx)))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"ham10000: cannot read {csv_path}: {err}") from None
    if not rows:
        raise UserError(f"ham10000: {csv_path} lists no images")
    return rows


def split_lesions(rows: list[tuple[str, str, int]], test: float, seed: int) -> set[str]:
    """The lesion ids of the test split: per class, round(test·n) of its n lesions (≥1, ≤n−1 for n ≥ 2)."""
    by_class: dict[int, set[str]] = {}
    for _, lesion, label in rows:
        by_class.setdefault(label, set()).add(lesion)
    chosen: set[str] = set()
    for label, lesions in sorted(by_class.items()):
        ordered = sorted(lesions)  # independent of the CSV's row order
        n = len(ordered)
        if n < 2:
            continue
        n_test = min(max(1, math.floor(test * n + 0.5)), n - 1)
        random.Random(_mix(seed, label)).shuffle(ordered)
        chosen.update(ordered[:n_test])
    return chosen


def find_images(root: Path) -> dict[str, Path]:
    """image stem → path, from one recursive scan for .jpg (any case); duplicates → first sorted path."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.[jJ][pP][gG]")):
        if not path.name.startswith("."):  # macOS `._` resource forks
            found.setdefault(path.stem, path)
    return found


class LesionImages:
    """(image, label) pairs of one split, decoded with PIL and transformed on access."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(open_rgb(path)), label  # a bad file: prunecli/data/images.py


def transforms(size: int | tuple[int, int], augment: bool):
    from torchvision import transforms as T

    steps = [T.Resize((size, size) if isinstance(size, int) else tuple(size))]
    if augment:
        steps += [T.RandomHorizontalFlip(), T.RandomVerticalFlip()]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def load_splits(opts: Options, holdout: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """Check the folder, the metadata and every image now; → {"train": [...], "val": [...]}, by image id,
    and with `holdout` N a "holdout" split of about N train images, whole lesions, carved out of train."""
    root = opts.root
    if not root.is_dir():
        raise UserError(f"ham10000: folder not found: {root}")
    csv_path = root / METADATA
    if not csv_path.is_file():
        raise UserError(f"ham10000: no {METADATA} in {root} (expected the HAM10000 download's metadata file)")
    rows = read_metadata(csv_path)
    images = find_images(root)
    missing = sorted(image for image, _, _ in rows if image not in images)
    if missing:
        raise UserError(f"ham10000: {len(missing)} of {len(rows)} images listed in {METADATA} are missing "
                        f"under {root} (first: {missing[0]}.jpg)")
    test_lesions = split_lesions(rows, opts.test, opts.seed)
    splits: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    train_lesions: list[str] = []
    for image, lesion, label in sorted(rows):
        splits["val" if lesion in test_lesions else "train"].append((images[image], label))
        if lesion not in test_lesions:
            train_lesions.append(lesion)
    if not splits["val"]:
        raise UserError(f"ham10000: the test split is empty (no class in {csv_path} has 2 or more lesions)")
    if holdout:  # holdout=N: whole lesions out of train (prunecli/data/holdout.py)
        from prunecli.data.holdout import carve_groups

        keep, held = carve_groups(train_lesions, holdout, "ham10000")
        train = splits["train"]
        splits["train"], splits["holdout"] = [train[i] for i in keep], [train[i] for i in held]
    return splits


@register_data("ham10000", usage=USAGE,
               description="HAM10000 skin lesions, 7 dx classes; lesion-grouped stratified test split; "
                           "N×N resize, train H+V flips")
def ham10000(arg: str | None) -> Dataset:
    from prunecli.data.holdout import take_holdout

    arg, holdout = take_holdout(arg, "ham10000")
    opts = parse_spec(arg)
    splits = load_splits(opts, holdout)
    if opts.size is not None:
        return _lesions(splits, (opts.size, opts.size), "?size=N", fixed=True, holdout=holdout)
    return _lesions(splits, (224, 224), "default: no model given", fixed=False, holdout=holdout)


def _lesions(splits: dict, size: tuple[int, int], source: str, *, fixed: bool, holdout: int = 0) -> Dataset:
    """The data set at `size` (H, W); unless `fixed`, `resize` remakes it at the model's size."""
    cache: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None, train_aug=None):
        augment = train and split == "train"  # never random flips on the test split
        if (split, augment, repr(train_aug)) not in cache:
            transform = transforms(size, augment)
            if augment and train_aug:  # --randaugment/--reprob: timm's training transform instead
                from prunecli.data.timm_aug import train_transform

                transform = train_transform(size, MEAN, STD, train_aug)
            cache[split, augment, repr(train_aug)] = LesionImages(splits[split], transform)
        return FolderLoader(cache[split, augment, repr(train_aug)], batch_size, train=train, seed=seed,
                            workers=workers, all_rngs=bool(train_aug))

    def resize(shape: tuple[int, int]) -> Dataset:
        return _lesions(splits, shape, "the model's input size", fixed=False, holdout=holdout)

    h, w = size
    return Dataset("ham10000", len(CLASSES), (3, h, w), MEAN, STD, make_loader,
                   sizes={name: len(samples) for name, samples in splits.items()},
                   resize=None if fixed else resize, supports_train_aug=True, holdout=holdout,
                   transform=f"input {h}×{w} ({source}); resize to {h}×{w}, train: + H and V flips")
