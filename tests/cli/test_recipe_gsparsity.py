"""`make -C recipes/gsparsity SMOKE=1`: search → compress → retrain → evaluate → profile on a tiny
torchvision ResNet (~1 min), the same chain and file names as the ImageNet run."""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows


def test_gsparsity_recipe_smoke(tmp_path):
    md = run_smoke("gsparsity", tmp_path)
    (row,) = table_rows(md)
    assert row["μ"] == "0.3" and row["MACs logs"] == "—"
    assert row["top-1 search"] == row["top-1 compact"] and float(row["top-1 search"]) > 50
    assert is_pct(row["top-1 retrain"])
    prof = json.loads((tmp_path / "mu0.3" / "profile.json").read_text())
    assert prof["macs"] < prof["compare"]["macs"] and prof["params"] < prof["compare"]["params"]
    header = json.loads((tmp_path / "mu0.3" / "prune.json").read_text())
    assert header["method"] == "zero-groups" and header["max_output_diff"] < 0.05 * header["output_scale"]
