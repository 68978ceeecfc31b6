"""Output discipline: results on stdout (a rich table, or JSON with --json), everything
human (progress, logs, warnings) on stderr.

The ground floor: engine, pruning, analysis, profiling, methods and data print through these
helpers without importing the CLI (`prunecli.cli._output` re-exports them for older imports)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

err = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]], whole: int = 0) -> Table:
    """A rich table; the first `whole` columns (names) are never cut or wrapped, and when
    `whole` is given the others wrap (long tokens fold) instead of ending in "…"."""
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        numeric = i > 0 and all(isinstance(r[i], int | float) or r[i] in (None, "") for r in rows if i < len(r))
        keep = i < whole
        widest = max(len(line) for r in [columns, *rows] if i < len(r) for line in fmt(r[i]).splitlines()) if keep else None
        t.add_column(col, justify="right" if numeric else "left", no_wrap=keep, min_width=widest,
                     overflow="fold" if whole else "ellipsis")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def print_result(obj: Any, as_json: bool, render) -> None:
    """`render()` returns a rich renderable for humans; `obj` is the JSON form."""
    if as_json:
        emit_json(obj)
    else:
        Console(highlight=False).print(render())


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def human(n: float) -> str:
    """1234567 → 1.23M (for MACs and params)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def progress(eta: bool = False):
    """A rich progress bar on stderr (transient on a terminal, silent when piped); `eta` adds
    the expected time left (rich's estimate from the recent pace)."""
    from rich import progress as rp

    left = [rp.TextColumn("left"), rp.TimeRemainingColumn()] if eta else []
    return rp.Progress(
        rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), *left,
        rp.TextColumn("{task.fields[status]}"), console=err, transient=True,
    )
