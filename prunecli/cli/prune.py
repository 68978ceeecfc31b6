"""`prunecli prune` (placeholder while being written)."""

from __future__ import annotations


def prune() -> None:
    """Not yet implemented."""
    raise SystemExit("not yet implemented")
