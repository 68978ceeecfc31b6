"""A tiny name → object registry shared by models, data sets and methods.

One registry per extension axis (see docs): entries are added with a decorator, listed by
`prunecli ls`, and looked up with a clear error naming the close matches.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunecli.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries are registered by the modules named in `modules`, imported lazily: `--help`
    imports none of them, a lookup imports them in order only until the name turns up (so
    `resnet20` never pays for importing timm), and a listing imports them all."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._pending = list(modules)

    def _load(self, until: str | None = None) -> None:
        while self._pending and (until is None or until not in self._entries):
            importlib.import_module(self._pending.pop(0))

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        self._load(until=name)
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(
                f"unknown {self.kind} {name!r}{hint}; `prunecli ls {self.kind if self.kind.endswith('data') else self.kind + 's'}` lists them"
            ) from None

    def __contains__(self, name: str) -> bool:
        self._load(until=name)
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._entries.items())
