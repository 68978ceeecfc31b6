"""Method registry: pruning criteria and analyses, one file per method, each citing its paper.

A structured method supplies a Torch-Pruning importance (how to score a group of coupled
channels) and declares what it needs (gradients from calibration data). The pruner — how
much to cut, where — lives in `prunecli.pruning.structured`; the graph work is Torch-Pruning's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunecli.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "structured" (prune) or "analysis" (analyze)
    paper: str
    description: str
    importance: Callable[..., Any] | None = None
    """`importance(seed=...) -> torch_pruning Importance` for structured methods."""
    needs_gradients: bool = False


METHODS: Registry[Method] = Registry("method")
_FILES = ("magnitude", "taylor", "random")
_loaded = False


def register_method(method: Method) -> Method:
    METHODS.add(method.name, method)
    return method


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in _FILES:
            importlib.import_module(f"prunecli.methods.{name}")


def get_method(name: str, kind: str | None = None) -> Method:
    _load()
    method = METHODS.get(name)
    if kind is not None and method.kind != kind:
        from prunecli.errors import UserError

        verb = "prune" if method.kind == "structured" else "analyze"
        raise UserError(f"method {name!r} is a {method.kind} method; use it with `prunecli {verb}`")
    return method


def list_methods() -> list[Method]:
    _load()
    return [m for _, m in METHODS.items()]
