"""`synthetic[:k=v,...]`: random tensors of a given shape, for tests and benchmarks.

Options: `classes` (10), `size` (32), `channels` (3), `n` (train samples, 256), `val` (64),
`seed` (0). Labels are a fixed function of the image (the argmax of a fixed linear map), so
a model can learn them and accuracy means something.
"""

from __future__ import annotations

from prunecli.data import Dataset, register_data
from prunecli.errors import UserError

KEYS = {"classes": 10, "size": 32, "channels": 3, "n": 256, "val": 64, "seed": 0}


def parse_options(arg: str | None) -> dict[str, int]:
    opts = dict(KEYS)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise UserError(f"bad synthetic option {item!r}; expected k=v with k in {', '.join(KEYS)}")
        try:
            opts[key] = int(value)
        except ValueError:
            raise UserError(f"synthetic option {key} must be an integer, got {value!r}") from None
        if opts[key] < (0 if key == "seed" else 1):
            raise UserError(f"synthetic option {key} must be positive, got {value}")
    return opts


def make_tensors(opts: dict[str, int]):
    import torch

    gen = torch.Generator().manual_seed(opts["seed"])
    c, s, k = opts["channels"], opts["size"], opts["classes"]
    total = opts["n"] + opts["val"]
    x = torch.randint(0, 256, (total, c, s, s), generator=gen, dtype=torch.uint8)
    proj = torch.randn(c * 4 * 4, k, generator=gen)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)
    y = ((pooled - pooled.mean(0)) @ proj).argmax(1)
    n = opts["n"]
    return {"train": (x[:n], y[:n]), "val": (x[n:], y[n:])}


@register_data("synthetic", usage="synthetic[:classes=10,size=32,channels=3,n=256,val=64,seed=0]",
               description="random images with learnable labels, for tests and benchmarks")
def synthetic(arg: str | None) -> Dataset:
    from prunecli.data.tensor import TensorLoader

    opts = parse_options(arg)
    mean, std = (0.5,) * opts["channels"], (0.29,) * opts["channels"]
    cache: dict = {}

    def make_loader(split, batch_size, *, train=False, seed=0, workers=0, preprocess=None):
        if not cache:
            cache.update(make_tensors(opts))
        x, y = cache["train" if split == "train" else "val"]
        return TensorLoader(x, y, batch_size, mean, std, train=train, seed=seed)

    shape = (opts["channels"], opts["size"], opts["size"])
    return Dataset("synthetic", opts["classes"], shape, mean, std, make_loader,
                   sizes={"train": opts["n"], "val": opts["val"]})
