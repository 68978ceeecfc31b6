"""Running a recipe's SMOKE chain and reading its results.md, shared by the recipe tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(recipe: str, out: Path, timeout: int = 900) -> str:
    """`make -j2 -C recipes/RECIPE SMOKE=1 OUT=out` with this interpreter's prunecli; returns results.md.

    `-j2`: a recipe's independent targets (schedules, targets, strategies) share the two cores.
    """
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / recipe), "SMOKE=1", f"OUT={out}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=timeout)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    return (out / "results.md").read_text()


def table_rows(md: str) -> list[dict[str, str]]:
    """The (first) markdown table of results.md as dicts keyed by its header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


def is_pct(cell: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}\.\d\d", cell)) and 0 <= float(cell) <= 100
