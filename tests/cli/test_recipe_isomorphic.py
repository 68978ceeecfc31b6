"""`make -C recipes/isomorphic SMOKE=1`: the Isomorphic Pruning reproduction chain on tiny timm models (~1.5 min).

Runs the same import/train → evaluate → prune --method isomorphic --target-macs → finetune (hard
distillation from the source model) → evaluate → profile → collect.py chain as the ImageNet run, so a
broken flag or file name in the recipe fails here, not days into a GPU job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {"deit_smoke": "deit_distilled_tiny_test", "convnext_smoke": "convnext_tiny_test"}


def table_rows(md: str) -> list[dict[str, str]]:
    """The markdown table of results.md as dicts keyed by its header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


def is_pct(cell: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}\.\d\d", cell)) and 0 <= float(cell) <= 100


def test_isomorphic_recipe_smoke(tmp_path):
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / "isomorphic"), "SMOKE=1", f"OUT={tmp_path}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    rows = {r["model"]: r for r in table_rows((tmp_path / "results.md").read_text())}
    assert set(rows) == set(SMOKE) | set(SMOKE.values())
    for source in SMOKE.values():
        assert is_pct(rows[source]["top-1 % ours"])
    for target, source in SMOKE.items():
        row = rows[target]
        assert row["source"] == source
        assert is_pct(row["top-1 % pruned"]) and is_pct(row["top-1 % ours"])
        assert abs(float(row["MACs / target"]) - 1) <= 0.02
        prof = json.loads((tmp_path / target / "profile.json").read_text())
        assert abs(prof["macs"] / (0.5 * prof["compare"]["macs"]) - 1) <= 0.02
    masks = json.loads((tmp_path / "convnext_smoke" / "pruned.masks.json").read_text())
    assert [b["name"] for b in masks["removed_blocks"]] == ["stages.2.blocks.0"]  # depth pruning ran
