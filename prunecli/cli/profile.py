"""`prunecli profile` (placeholder while being written)."""

from __future__ import annotations


def profile() -> None:
    """Not yet implemented."""
    raise SystemExit("not yet implemented")
