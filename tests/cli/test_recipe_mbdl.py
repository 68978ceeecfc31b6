"""`make -C recipes/mbdl SMOKE=1`: the MBDL chain on the tiny DEQ and phantoms (~1.5 min):
train → evaluate → prune (local L1 0.4) → three fine-tuning strategies → evaluate → profile --data."""

from __future__ import annotations

import json

from tests.recipes import run_smoke, table_rows


def test_mbdl_recipe_smoke(tmp_path):
    md = run_smoke("mbdl", tmp_path)
    (row,) = table_rows(md)
    assert row["model"] == "deq" and row["ratio"] == "0.4" and row["paper"].startswith("50%")
    for key in ("base PSNR / SSIM", "one-shot", "supervised FT", "distill FT (no GT)", "self-sup FT (no GT)"):
        psnr, ssim = (float(v) for v in row[key].split(" / "))
        assert 10 < psnr < 60 and 0 < ssim <= 1
    prof = json.loads((tmp_path / "deq" / "r0.4" / "profile.json").read_text())
    assert prof["solver"]["tol"] == prof["compare"]["solver"]["tol"]
    ft = json.loads((tmp_path / "deq" / "r0.4" / "selfsup.eval.json").read_text())
    assert ft["samples"] == 8
