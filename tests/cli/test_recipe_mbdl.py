"""`make -C recipes/mbdl SMOKE=1`: the MBDL chain on the tiny DEQ and phantoms (~1.5 min):
train → evaluate → prune (local L1 0.4) → three fine-tuning strategies → evaluate → profile --data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.test_recipe_isomorphic import table_rows

ROOT = Path(__file__).resolve().parents[2]


def test_mbdl_recipe_smoke(tmp_path):
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / "mbdl"), "SMOKE=1", f"OUT={tmp_path}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=900)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    (row,) = table_rows((tmp_path / "results.md").read_text())
    assert row["model"] == "deq" and row["ratio"] == "0.4" and row["paper"].startswith("50%")
    for key in ("base PSNR / SSIM", "one-shot", "supervised FT", "distill FT (no GT)", "self-sup FT (no GT)"):
        psnr, ssim = (float(v) for v in row[key].split(" / "))
        assert 10 < psnr < 60 and 0 < ssim <= 1
    prof = json.loads((tmp_path / "deq" / "r0.4" / "profile.json").read_text())
    assert prof["solver"]["tol"] == prof["compare"]["solver"]["tol"]
    ft = json.loads((tmp_path / "deq" / "r0.4" / "selfsup.eval.json").read_text())
    assert ft["samples"] == 8
