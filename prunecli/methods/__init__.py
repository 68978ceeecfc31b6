"""Method registry: pruning criteria and analyses, one file per method, each citing its paper.

A structured method supplies a Torch-Pruning importance (how to score a group of coupled
channels) and declares what it needs (gradients from calibration data). The pruner — how
much to cut, where — lives in `prunecli.pruning.structured`; the graph work is Torch-Pruning's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prunecli.methods.params import Param
from prunecli.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "structured" or "unstructured" (prune), or "analysis" (analyze)
    paper: str
    description: str
    importance: Callable[..., Any] | None = None
    """`importance(seed=...) -> torch_pruning Importance` for structured methods."""
    needs_gradients: bool = False
    plan: dict[str, Any] = field(default_factory=dict)
    """PrunePlan fields the method fixes (e.g. isomorphic scopes with global ranking)."""
    importance_option: bool = False
    """The method takes its importance criterion from `--importance` (another method's)."""
    decide: Callable[..., Any] | None = None
    """`decide(loaded, options) -> (removed, details)` for methods that choose the channels of each
    layer themselves (no ratio): deleted indices and facts per deciding conv."""
    decide_needs_data: bool = True
    """`decide` looks at data (--data or --reuse); zero-groups only reads the weights."""
    check_output: bool = False
    """The pruned model should compute what the input did: `prune` measures the difference."""
    params: tuple[Param, ...] = ()
    """The `prune` options this method takes beyond the common ones (`prunecli.methods.params`);
    any other method-specific option given with it is refused."""


_FILES = ("magnitude", "taylor", "random", "similarity", "isomorphic", "l1_unstructured", "cka", "zero_groups", "halp")
METHODS: Registry[Method] = Registry("method", tuple(f"prunecli.methods.{f}" for f in _FILES))


def register_method(method: Method) -> Method:
    METHODS.add(method.name, method)
    return method


def get_method(name: str, kind: str | None = None) -> Method:
    method = METHODS.get(name)
    if kind is not None and method.kind != kind:
        from prunecli.errors import UserError

        verb = "analyze" if method.kind == "analysis" else "prune"
        raise UserError(f"method {name!r} is {'an' if method.kind[0] in 'aeiou' else 'a'} {method.kind} method; use it with `prunecli {verb}`")
    return method


def list_methods() -> list[Method]:
    return [m for _, m in METHODS.items()]
