"""`digits`: scikit-learn's bundled handwritten digits, the offline default data set.

1,797 8×8 grey images in 10 classes, upsampled to 32×32 RGB so CIFAR models run on them
unchanged. The split is fixed (stratified, 80/20, seed 0), so numbers compare across runs.
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


@register_data("digits", usage="digits", description="scikit-learn digits, 32×32 RGB, 1437/360 split (offline)")
def digits(arg: str | None) -> Dataset:
    if arg:
        raise UserError("the `digits` data spec takes no argument")
    from prunecli.data.tensor import Augment, TensorLoader

    cache: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if not cache:
            cache.update(_tensors())
        x, y = cache[split]
        return TensorLoader(x, y, batch_size, MEAN, STD, train=train, augment=Augment(pad=2), seed=seed)

    return Dataset("digits", 10, (3, 32, 32), MEAN, STD, make_loader, sizes={"train": 1437, "val": 360})

