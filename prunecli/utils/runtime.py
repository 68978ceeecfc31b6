"""Device choice, seeding, and importing torch & co. in a fresh process."""

from __future__ import annotations

import contextlib
import random

from prunecli.errors import UserError


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        return name
    raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def heavy_imports():
    """Import torch & co. with the garbage collector paused, then freeze what they made.

    torch, Torch-Pruning, timm and torchvision create about a million long-lived objects, and the
    collector's full passes over them while they were being created took 0.5 s of a 4.4 s
    `prune` (six full collections, the last 0.15 s alone). Paused during the imports and frozen
    after (`gc.freeze`: left out of every later collection), they cost nothing; what the command
    creates afterwards is collected as usual. Where torch is imported already (the tests, a
    second command in one process) nothing changes: freezing there would keep garbage that is
    still waiting for collection forever.
    """
    import gc
    import sys

    if "torch" in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
