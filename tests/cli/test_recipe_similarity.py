"""`make -C recipes/graphical-similarity SMOKE=1`: the paper-reproduction chain on a tiny model (~1.5 min).

Runs the same train → analyze → prune --reuse (per τ) → finetune → evaluate → profile → collect.py
chain as the CIFAR-10 run, so a broken flag or file name in the recipe fails here, not days into a GPU job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TAUS = {"0.80", "0.70"}


def table_rows(md: str) -> list[dict[str, str]]:
    """The markdown table of results.md as dicts keyed by its header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


def test_similarity_recipe_smoke(tmp_path):
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / "graphical-similarity"), "SMOKE=1", f"OUT={tmp_path}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    rows = table_rows((tmp_path / "results.md").read_text())
    assert {(r["arch"], r["τ"]) for r in rows} == {("resnet_tiny", t) for t in SMOKE_TAUS | {"base"}}
    assert len(rows) == 3
    for r in rows:
        assert re.fullmatch(r"\d{1,3}\.\d\d", r["top-1 % ours"]) and 0 <= float(r["top-1 % ours"]) <= 100
    for tau in SMOKE_TAUS:
        prof = json.loads((tmp_path / "resnet_tiny" / f"tau{tau}" / "profile.json").read_text())
        assert prof["macs"] < prof["compare"]["macs"]
        row = next(r for r in rows if r["τ"] == tau)
        assert float(row["MACs ↓ ours"].rstrip("%")) > 0
