"""Multi-coil MRI reconstruction data (Park et al., MBDL pruning; spec §1.1): `phantom` and `fastmri`.

`phantom[:n=64,val=16,test=val,size=64,coils=4,accel=6,mask=uniform,center=0.32/accel,seed=0]` is
built in and offline: random ellipse phantoms x with smooth coil maps S (prunecli/mri/phantom.py),
train samples 0…n−1, val samples n…n+val−1 and test samples n+val…n+val+test−1 of the stream
`seed` (each sample is its own volume). `test` defaults to val's count (the paper's 5/5); the test
samples come after val in the stream, so train and val are those of the spec without `test`, and
`test=0` leaves no test split (`evaluate --split test` is then an error).

`fastmri:DIR[?mask=uniform&accel=6&center=0.32/accel&size=N&maps=auto&split=90/10/0&seed=0]` reads fastMRI **brain
multi-coil** files (`DIR/*.h5`: `kspace` [slices, C, H, W] complex). Per slice, as the spec's
protocol: k-space ÷ its max |k|; maps S from the file (`sens_maps`/`smaps`, `maps=file`) or
estimated from the ACS block of the chosen mask at the file's width (`maps=acs`, see
prunecli/mri/coils.py; `auto` = file maps when present, else ACS), or ESPIRiT on the fully
sampled k-space as the paper (`maps=espirit`, sigpy; slow, so cached with the slice); ground truth
x = Σ conj(S_c)·F⁻¹k_c. `size=N` centre-crops x and S to N×N (all files then stack; without it,
all files must share H×W). fastMRI's `SliceDataset` is not used to index slices: it opens
every entry of DIR (not only `*.h5`), requires the `ismrmrd_header` and imports pandas/requests,
and its padding metadata plays no part here; the slice count is simply `kspace.shape[0]`.
Split (spec §1.8 gotcha 5: the reference split slices, so one volume sat in train and test):
by **file**, fixed by `seed`, `split=T/V/S` percent of the n files (default 90/10/0, the split of
earlier versions; the paper's is `split=90/5/5`): the sorted files are permuted by
torch.Generator(seed); the first max(1, round(n·V/100)) become val, the next max(1, round(n·S/100))
test (a split whose percentage is 0 gets none), each only while train keeps at least one file,
val served first; the rest is train. So 1 file: train only; 2 files: train 1, val 1, no test;
3 files with 90/5/5: one each; 20 files: 18/1/1; 100 files: 90/5/5. The val files do not depend
on S (test files come out of train), and a split that is empty when a command asks for it is one
error line.

Both: measurements are simulated, y = P·F·S·x, without noise (§1.1), with one fixed mask P
(prunecli/mri/masks.py; `center` defaults to 0.32/accel: fastMRI's 0.08 at 4×, 0.04 at 8×).
Loaders yield x = pack(y, P, S) [B, 4C+1, H, W] and y = to_channels(x_gt) [B, 2, H, W]
(prunecli/mri/pack.py); `train=True` shuffles by (seed, epoch), with no augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.data import Dataset, register_data
from prunecli.errors import UserError

if TYPE_CHECKING:
    import torch

MASK_KINDS = ("uniform", "random", "equispaced")
MAP_SOURCES = ("auto", "acs", "file", "espirit")
PHANTOM = {"n": 64, "val": 16, "test": None, "size": 64, "coils": 4, "accel": 6, "mask": "uniform", "center": None, "seed": 0}
FASTMRI = {"mask": "uniform", "accel": 6, "center": None, "size": None, "maps": "auto", "split": (90, 10, 0), "seed": 0}
FASTMRI_USAGE = "fastmri:DIR[?mask=uniform&accel=6&center=0.32/accel&size=N&maps=auto&split=90/10/0&seed=0]"
SPLITS = ("train", "val", "test")
CACHE_BYTES = 512 * 2**20  # per split: processed fastMRI slices kept in memory up to this size


def parse_options(items: list[str], defaults: dict, family: str) -> dict:
    """`k=v` items → options, each checked against `defaults`' keys with a one-line UserError."""
    opts = dict(defaults)
    for item in filter(None, items):
        key, eq, value = item.partition("=")
        if not eq or key not in defaults:
            raise UserError(f"bad {family} option {item!r}; options are {', '.join(defaults)}")
        opts[key] = _value(key, value, family)
    return opts


def _value(key: str, value: str, family: str):
    choices = {"mask": MASK_KINDS, "maps": MAP_SOURCES}.get(key)
    if choices:
        if value not in choices:
            raise UserError(f"{family} {key} must be one of {', '.join(choices)}, got {value!r}")
        return value
    if key == "center":
        try:
            fraction = float(value)
        except ValueError:
            fraction = float("nan")
        if not 0 < fraction < 1:
            raise UserError(f"{family} center must be a fraction strictly between 0 and 1, got {value!r}")
        return fraction
    if key == "split":
        return _percentages(value, family)
    low = 0 if key in ("seed", "test") else 1
    if not value.isdigit() or int(value) < low:
        raise UserError(f"{family} {key} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def _percentages(value: str, family: str) -> tuple[int, int, int]:
    """`90/5/5` → (90, 5, 5): train/val/test percent of the files, summing to 100, train above 0."""
    parts = value.split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or sum(map(int, parts)) != 100 or int(parts[0]) == 0:
        raise UserError(f"{family} split must be TRAIN/VAL/TEST percentages summing to 100 with TRAIN > 0 "
                        f"(e.g. 90/5/5), got {value!r}")
    return tuple(int(p) for p in parts)


def fixed_mask(opts: dict, width: int) -> torch.Tensor:
    from prunecli.mri.masks import make_mask

    return make_mask(opts["mask"], width, opts["accel"], opts["center"], opts["seed"])


def packed(kspace, mask, smaps, image):
    """complex y [B,C,H,W], mask [W], S [B,C,H,W], x [B,H,W] → float32 (input, target)."""
    from prunecli.mri.pack import pack, to_channels

    return pack(kspace, mask.view(1, 1, 1, -1), smaps).float(), to_channels(image).float()


class MRILoader:
    """Batches `fetch(indices)` over `count` samples; order from (seed, epoch), like TensorLoader."""

    def __init__(self, count: int, fetch, batch_size: int, train: bool = False, seed: int = 0):
        self.count, self.fetch, self.batch_size = count, fetch, batch_size
        self.train, self.seed, self.epoch = train, seed, 0
        self.sharding = None  # set by `shard` (torchrun)
        self.batch_weight = 1.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, rank: int, world: int, repeated: bool = False) -> MRILoader:
        """This rank's contiguous slice of every global batch (prunecli/data/shard.py). Repeated
        augmentation is for augmented classification data; reconstruction has no augmentation."""
        import copy

        from prunecli.data.shard import Sharding
        from prunecli.errors import UserError

        if repeated:
            raise UserError("--repeated-aug is for classification data (reconstruction data is not augmented)")
        part = copy.copy(self)
        part.sharding = Sharding(rank, world)
        return part

    def _plan(self):
        from prunecli.data.shard import plan

        return plan(self.count, self.batch_size, self.sharding.rank, self.sharding.world, self.train)

    def __len__(self) -> int:
        if self.sharding is not None:
            return len(self._plan())
        return (self.count + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        import torch

        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.count, generator=gen) if self.train else torch.arange(self.count)
        if self.sharding is not None:
            for part in self._plan():
                self.batch_weight = part.weight
                yield self.fetch(order[part.lo:part.hi])
        else:
            for start in range(0, self.count, self.batch_size):
                yield self.fetch(order[start:start + self.batch_size])
        self.epoch += 1

    def targets(self) -> None:
        """Reconstruction samples have no class labels."""
        return None

    def subset(self, indices: list[int]) -> MRILoader:
        """A loader over the samples at `indices`, in that order, unshuffled."""
        import torch

        chosen = torch.as_tensor(indices, dtype=torch.long)
        return MRILoader(len(chosen), lambda idx: self.fetch(chosen[idx]), self.batch_size)


def reconstruction_set(name: str, coils: int, height: int, width: int, make_loader, sizes, volumes) -> Dataset:
    return Dataset(name, 0, (4 * coils + 1, height, width), (0.0,), (1.0,), make_loader,
                   sizes=sizes, task="reconstruction", own_test=True, volumes=volumes)


def size_line(dataset) -> str | None:
    """`data: SPEC — train 32, val 8, test 8 slices (volumes: train 32, val 8, test 8)` for MRI data
    (train/finetune/evaluate print it on stderr), None for other data."""
    if dataset.volumes is None:
        return None
    slices = ", ".join(f"{s} {dataset.sizes.get(s, 0)}" for s in SPLITS)
    volumes = ", ".join(f"{s} {dataset.volumes.get(s, 0)}" for s in SPLITS)
    return f"data: {dataset.spec} — {slices} slices (volumes: {volumes})"


def simulate_phantoms(opts: dict, split: str, mask: torch.Tensor):
    from prunecli.mri.ops import forward
    from prunecli.mri.phantom import phantom_set

    count, start = {"train": (opts["n"], 0), "val": (opts["val"], opts["n"]),
                    "test": (opts["test"], opts["n"] + opts["val"])}[split]
    images, smaps = phantom_set(count, opts["size"], opts["coils"], opts["seed"], start)
    return packed(forward(images, smaps, mask), mask, smaps, images)


@register_data("phantom", usage="phantom[:n=64,val=16,test=val,size=64,coils=4,accel=6,mask=uniform,center=0.32/accel,seed=0]",
               description="MRI reconstruction: simulated multi-coil ellipse phantoms, y=PFSx (offline)")
def phantom(arg: str | None) -> Dataset:
    opts = parse_options((arg or "").split(","), PHANTOM, "phantom")
    if opts["size"] < 8:
        raise UserError(f"phantom size must be at least 8, got {opts['size']}")
    if opts["test"] is None:
        opts["test"] = opts["val"]
    mask = fixed_mask(opts, opts["size"])
    cache: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if split == "test" and not opts["test"]:
            raise UserError("phantom: test=0 leaves no test split; give test=N in the spec")
        if split not in cache:
            cache[split] = simulate_phantoms(opts, split, mask)
        inputs, targets = cache[split]
        return MRILoader(len(targets), lambda idx: (inputs[idx], targets[idx]), batch_size, train, seed)

    size, sizes = opts["size"], {split: opts[key] for split, key in zip(SPLITS, ("n", "val", "test"), strict=True)}
    return reconstruction_set("phantom", opts["coils"], size, size, make_loader, sizes, sizes)


@dataclass(frozen=True)
class Volume:
    path: Path
    slices: int
    coils: int
    height: int
    width: int


def read_volume(path: Path) -> Volume:
    """A file's k-space shape, checked: readable HDF5, has `kspace`, multi-coil (4-D)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f:
                raise UserError(f"fastmri: {path.name} has no `kspace` dataset (has: {', '.join(f) or 'nothing'})")
            shape, dtype = f["kspace"].shape, f["kspace"].dtype
    except OSError as err:
        raise UserError(f"fastmri: cannot read {path}: {err}") from None
    if len(shape) == 3:
        raise UserError(f"fastmri: {path.name} is single-coil (kspace {shape}); use multi-coil brain files")
    if len(shape) != 4 or 0 in shape:
        raise UserError(f"fastmri: {path.name}: kspace must be [slices, coils, H, W], got {shape}")
    if dtype.kind != "c":
        raise UserError(f"fastmri: {path.name}: kspace must be complex, got {dtype}")
    return Volume(path, *shape)


def scan(root: Path, size: int | None) -> list[Volume]:
    """All `*.h5` volumes of DIR, checked to stack: one coil count; one H×W, or all ≥ size."""
    if not root.is_dir():
        raise UserError(f"fastmri: folder not found: {root}", hint=f"usage: {FASTMRI_USAGE}")
    volumes = [read_volume(p) for p in sorted(root.glob("*.h5"))]
    if not volumes:
        raise UserError(f"fastmri: no .h5 files in {root}", hint="expected fastMRI brain multi-coil files")
    if len({v.coils for v in volumes}) > 1:
        raise UserError(f"fastmri: files have different coil counts {sorted({v.coils for v in volumes})}; "
                        "keep one coil count per folder")
    shapes = {(v.height, v.width) for v in volumes}
    if size is None and len(shapes) > 1:
        raise UserError(f"fastmri: images of different sizes {sorted(shapes)}; add ?size=N to centre-crop to N×N")
    if size is not None and any(size > min(v.height, v.width) for v in volumes):
        raise UserError(f"fastmri: size={size} exceeds the smallest image {min(min(s) for s in shapes)}")
    return volumes


def split_counts(n: int, percent: tuple[int, int, int]) -> tuple[int, int]:
    """(val files, test files) of n files: max(1, round(n·p/100)) for a percentage p > 0, val first,
    each only while train keeps at least one file (see the module doc)."""
    counts = []
    left = n
    for p in percent[1:]:
        count = min(left - 1, max(1, round(n * p / 100))) if p and left > 1 else 0
        counts.append(count)
        left -= count
    return counts[0], counts[1]


def split_volumes(volumes: list[Volume], seed: int, percent=(90, 10, 0)) -> dict[str, list[Volume]]:
    """By file: permute the sorted files with `seed`; val files first, then test, the rest train."""
    import torch

    order = torch.randperm(len(volumes), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val, n_test = split_counts(len(volumes), percent)
    val, test = set(order[:n_val]), set(order[n_val:n_val + n_test])
    return {"train": [v for i, v in enumerate(volumes) if i not in val and i not in test],
            "val": [v for i, v in enumerate(volumes) if i in val],
            "test": [v for i, v in enumerate(volumes) if i in test]}


def empty_split(root: Path, split: str, splits: dict, percent) -> UserError:
    """The one-line error for a split with no files."""
    n = sum(len(v) for v in splits.values())
    ratio = "/".join(map(str, percent))
    if n == 1:
        return UserError(f"fastmri: {root} holds one file, so the by-file split leaves no {split} files")
    if split == "test" and not percent[2]:
        return UserError(f"fastmri: split={ratio} has no test files; give e.g. ?split=90/5/5 (the paper's)")
    counts = ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)
    return UserError(f"fastmri: {root} holds {n} files; split={ratio} gives {counts} files, so no {split} "
                     "files (train keeps at least one; val is served before test)")


def load_slice(volume: Volume, index: int, opts: dict):
    """One slice → (packed input [4C+1, N, N], target [2, N, N]), following the spec's protocol."""
    import h5py
    import torch
    from fastmri.data.transforms import center_crop

    from prunecli.mri.coils import espirit_maps, estimate_smaps, file_maps
    from prunecli.mri.masks import acs_width
    from prunecli.mri.ops import coil_combine, forward

    try:
        with h5py.File(volume.path, "r") as f:
            kspace = torch.from_numpy(f["kspace"][index]).to(torch.complex64)
            smaps = file_maps(f, index) if opts["maps"] in ("auto", "file") else None
    except OSError as err:  # a damaged data chunk: the header read fine when the folder was scanned
        raise UserError(f"fastmri: cannot read slice {index} of {volume.path}: {str(err)[:160]}") from None
    if opts["maps"] == "file" and smaps is None:
        raise UserError(f"fastmri: maps=file but {volume.path.name} has no `sens_maps`/`smaps` dataset")
    if smaps is not None and smaps.shape != kspace.shape:
        raise UserError(f"fastmri: {volume.path.name}: maps {tuple(smaps.shape)} ≠ kspace {tuple(kspace.shape)}")
    kspace = kspace / kspace.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    if opts["maps"] == "espirit":  # reads the fully sampled k-space, as the paper (spec §1.1)
        smaps = espirit_maps(kspace)
    elif smaps is None:
        smaps = estimate_smaps(kspace, max(4, acs_width(fixed_mask(opts, volume.width))))
    image = coil_combine(kspace, smaps)
    if opts["size"]:
        image, smaps = (center_crop(t, (opts["size"],) * 2) for t in (image, smaps))
    mask = fixed_mask(opts, image.shape[-1])
    inputs, target = packed(forward(image[None], smaps[None], mask), mask, smaps[None], image[None])
    return inputs[0], target[0]


class SliceReader:
    """fetch(indices) for MRILoader: slices read lazily; processed ones cached up to CACHE_BYTES."""

    def __init__(self, volumes: list[Volume], opts: dict):
        self.index = [(v, s) for v in volumes for s in range(v.slices)]
        self.opts, self.cache, self.cached_bytes = opts, {}, 0

    def sample(self, i: int):
        if i in self.cache:
            return self.cache[i]
        pair = load_slice(*self.index[i], self.opts)
        size = sum(t.numel() * t.element_size() for t in pair)
        if self.cached_bytes + size <= CACHE_BYTES:
            self.cache[i], self.cached_bytes = pair, self.cached_bytes + size
        return pair

    def __call__(self, indices: torch.Tensor):
        import torch

        pairs = [self.sample(int(i)) for i in indices]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@register_data("fastmri", usage=FASTMRI_USAGE,
               description="MRI reconstruction: fastMRI brain multi-coil .h5, y=PFSx simulated; split by file")
def fastmri(arg: str | None) -> Dataset:
    if not arg:
        raise UserError(f"the `fastmri` data spec needs a folder: {FASTMRI_USAGE}")
    path, sep, query = arg.rpartition("?")
    root, opts = Path(path if sep else arg).expanduser(), parse_options(query.split("&") if sep else [], FASTMRI, "fastmri")
    volumes = scan(root, opts["size"])
    splits = split_volumes(volumes, opts["seed"], opts["split"])
    sizes = {name: sum(v.slices for v in vols) for name, vols in splits.items()}
    readers: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if not splits[split]:
            raise empty_split(root, split, splits, opts["split"])
        reader = readers.setdefault(split, SliceReader(splits[split], opts))
        return MRILoader(len(reader.index), reader, batch_size, train, seed)

    height, width = (opts["size"],) * 2 if opts["size"] else (volumes[0].height, volumes[0].width)
    counts = {name: len(vols) for name, vols in splits.items()}
    return reconstruction_set("fastmri", volumes[0].coils, height, width, make_loader, sizes, counts)
