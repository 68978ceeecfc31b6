"""Summary tables that fit the terminal: wide sweeps are split, never cut to "…".

Sensitivity has a column per pruning ratio and similarity one per threshold τ: at 80 columns
rich would shrink them until the numbers read "0.0…". Instead the sweep columns are dealt out
over as many tables as needed, each repeating the key columns (layer, filters…) and holding as
many sweep columns as the width allows, and a last line says that the report (`-o FILE`, or
`--json`) has every number at full precision.
"""

from __future__ import annotations

from typing import Any

from prunecli.console import table


def _width(renderable, console) -> int:
    """The characters `renderable` needs to print without shrinking a column (measured unbounded:
    rich clamps a measurement to the width it is given)."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), renderable).maximum


def fitted(title: str, columns: list[str], rows: list[list[Any]], keys: int, width: int | None = None):
    """`rows` under `columns` as one table, or as several when wider than `width` (default: the
    terminal's, as the result will be printed): the first `keys` columns in each, the rest dealt
    out in order. Returns a rich renderable (a Group of tables and the where-to-look note)."""
    from rich.console import Console, Group
    from rich.text import Text

    console = Console(width=width) if width else Console()
    whole = _titled(title, columns, rows, list(range(len(columns))))
    if _width(whole, console) <= console.width or len(columns) <= keys + 1:
        return whole
    chunks = _deal(columns, rows, keys, console)
    parts = [_titled(f"{title} ({i}/{len(chunks)})" if i == 1 else f"({i}/{len(chunks)})", columns, rows,
                     [*range(keys), *chunk]) for i, chunk in enumerate(chunks, 1)]
    note = Text(f"{len(columns) - keys} columns split over {len(chunks)} tables to fit {console.width} "
                "characters; every number at full precision is in the report (-o FILE, or --json)",
                style="dim")
    return Group(*parts, note)


def _deal(columns: list[str], rows: list[list[Any]], keys: int, console) -> list[range]:
    """The fewest tables whose value columns, dealt out evenly and in order, all fit the width
    (even shares rather than greedy filling: no last table holding one stray column)."""
    n = len(columns) - keys
    for k in range(2, n + 1):
        sizes = [n // k + (i < n % k) for i in range(k)]
        starts = [keys + sum(sizes[:i]) for i in range(k)]
        chunks = [range(a, a + size) for a, size in zip(starts, sizes, strict=True)]
        if all(_width(_titled(None, columns, rows, [*range(keys), *c]), console) <= console.width for c in chunks):
            return chunks
    return [range(keys + i, keys + i + 1) for i in range(n)]  # one column each: as narrow as it gets


def _titled(title: str | None, columns: list[str], rows: list[list[Any]], picked: list[int]):
    t = table(title, [columns[i] for i in picked], [[r[i] if i < len(r) else "" for i in picked] for r in rows])
    t.columns[0].no_wrap = True
    return t
