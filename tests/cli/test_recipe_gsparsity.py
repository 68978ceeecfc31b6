"""`make -C recipes/gsparsity SMOKE=1`: search → compress → retrain → evaluate → profile on a tiny
torchvision ResNet (~1 min), the same chain and file names as the ImageNet run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.test_recipe_isomorphic import is_pct, table_rows

ROOT = Path(__file__).resolve().parents[2]


def test_gsparsity_recipe_smoke(tmp_path):
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / "gsparsity"), "SMOKE=1", f"OUT={tmp_path}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    (row,) = table_rows((tmp_path / "results.md").read_text())
    assert row["μ"] == "0.3" and row["MACs logs"] == "—"
    assert row["top-1 search"] == row["top-1 compact"] and float(row["top-1 search"]) > 50
    assert is_pct(row["top-1 retrain"])
    prof = json.loads((tmp_path / "mu0.3" / "profile.json").read_text())
    assert prof["macs"] < prof["compare"]["macs"] and prof["params"] < prof["compare"]["params"]
    header = json.loads((tmp_path / "mu0.3" / "prune.json").read_text())
    assert header["method"] == "zero-groups" and header["max_output_diff"] < 0.05 * header["output_scale"]
