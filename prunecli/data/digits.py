"""`digits`: scikit-learn's bundled handwritten digits, the offline default data set.

1,797 8×8 grey images in 10 classes, upsampled to 32×32 RGB so CIFAR models run on them
unchanged. The split is fixed (stratified, 80/20, seed 0), so numbers compare across runs.

`digits?aug=crop|shift|none&norm=dataset|half` takes CIFAR's options (prunecli.data.tensor),
so recipes can run their reference data settings on it offline: `crop` (default) is a pad-2
random crop without flip (a mirrored digit is another glyph), `shift` Keras' shift 0.1 +
horizontal flip as on CIFAR, `none` no augmentation; `half` normalises with 0.5/0.5; and
`holdout=N` as CIFAR (N of the 1437 training images become `val`; `test` is the 360).
"""

from __future__ import annotations

from prunecli.data import Dataset, register_data
from prunecli.errors import UserError

MEAN = (0.2, 0.2, 0.2)
STD = (0.33, 0.33, 0.33)


def _tensors():
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, va = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=d.target)
    return {"train": (x[tr], y[tr]), "val": (x[va], y[va])}


@register_data("digits", usage="digits[?aug=crop|shift|none&norm=dataset|half&holdout=N]",
               description="scikit-learn digits, 32×32 RGB, 1437/360 split (offline)")
def digits(arg: str | None) -> Dataset:
    from prunecli.data.holdout import carve, take_holdout
    from prunecli.data.tensor import Augment, TensorLoader, split_options

    arg, holdout = take_holdout(arg, "digits")
    rest, opts = split_options(arg, "digits")
    if rest:
        raise UserError("the `digits` data spec takes no argument, only options: digits?aug=none&norm=half")
    mean, std = opts.stats(MEAN, STD)
    augment = opts.augment(Augment(pad=2))

    cache: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if not cache:
            cache.update(_tensors())
            if holdout:  # holdout=N: N training images become the val split (prunecli/data/holdout.py)
                x, y = cache["train"]
                keep, held = carve(len(y), holdout, "digits")
                cache.update(train=(x[keep], y[keep]), holdout=(x[held], y[held]))
        x, y = cache[split]
        return TensorLoader(x, y, batch_size, mean, std, train=train, augment=augment, seed=seed)

    sizes = {"train": 1437 - holdout, "val": 360, **({"holdout": holdout} if holdout else {})}
    return Dataset("digits", 10, (3, 32, 32), mean, std, make_loader, sizes=sizes, holdout=holdout)

