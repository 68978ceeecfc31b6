"""`prunecli analyze` (placeholder while being written)."""

from __future__ import annotations


def analyze() -> None:
    """Not yet implemented."""
    raise SystemExit("not yet implemented")
