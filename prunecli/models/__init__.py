"""Model registry: name → builder plus the facts tools need about the model.

Each family file registers its variants with `@register_model(...)`. An entry declares the
task, an example input shape and the layers pruning must leave alone (the classifier head,
by name, never guessed from `out_features == num_classes`). Any timm model is reachable as
`timm:<name>` without registering it (see `timm_zoo.py`), and any torchvision classifier as
`tv:<name>` (see `torchvision_zoo.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prunecli.errors import UserError
from prunecli.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    family: str
    description: str = ""
    task: str = "classification"
    input_shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = 10
    protected: tuple[str, ...] = ("fc",)
    """Module names (or globs, e.g. `cascades.*.final_conv`) pruning must not remove output
    channels from: the classifier, a reconstruction net's 2-channel output convs."""
    defaults: dict[str, Any] = field(default_factory=dict)
    tiny: bool = False
    tied: tuple[tuple[str, str], ...] = ()
    """(follower, leader) pairs: the follower layer loses the output channels with the same
    indices as the leader conv's removed filters, for methods that decide per layer (similarity);
    its BN follows through the dependency graph. VGG's hidden FC-512 follows the last conv
    (Li et al., PRL 2023, reference `PruneVGGWeights`)."""


_FAMILIES = ("cifar_resnet", "cifar_vgg", "cifar_densenet", "mri", "torchvision_zoo", "timm_zoo", "keras_resnet",
             "keras_densenet")
MODELS: Registry[ModelEntry] = Registry("model", tuple(f"prunecli.models.{f}" for f in _FAMILIES))


def register_model(name: str, **facts: Any) -> Callable:
    """Decorator registering a builder `fn(num_classes=..., **kwargs) -> nn.Module`."""

    def deco(fn: Callable) -> Callable:
        MODELS.add(name, ModelEntry(name=name, builder=fn, **facts))
        return fn

    return deco


def get_entry(name: str) -> ModelEntry:
    if name.startswith("timm:"):
        from prunecli.models.timm_zoo import timm_entry

        return timm_entry(name[len("timm:") :])
    if name.startswith("tv:"):
        from prunecli.models.torchvision_zoo import tv_entry

        return tv_entry(name[len("tv:") :])
    return MODELS.get(name)


def list_models() -> list[ModelEntry]:
    return [entry for _, entry in MODELS.items()]


def build_model(name: str, **kwargs: Any):
    """Build a registered model; `kwargs` override the entry's defaults (None values are dropped)."""
    entry = get_entry(name)
    args = {"num_classes": entry.num_classes, **entry.defaults} if entry.task == "classification" else dict(entry.defaults)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    try:
        model = entry.builder(**args)
    except TypeError as err:
        raise UserError(f"model {name!r} does not accept these options: {err}") from err
    return model, entry, args
