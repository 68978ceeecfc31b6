"""`make -C recipes/halp SMOKE=1`: HALP, L1 and Taylor pruned to the same measured latency on a tiny
ResNet (digits, CPU), two seeds, fine-tuned, evaluated, profiled against the baseline and tabulated
by `prunecli report`; a few minutes on a loaded machine, so slow."""

from __future__ import annotations

import json

import pytest

from tests.recipes import run_smoke, table_rows


@pytest.mark.slow
def test_halp_recipe_smoke(tmp_path):
    md = run_smoke("halp", tmp_path)
    rows = {r["setting"]: r for r in table_rows(md)}
    assert {"tiny/base", "tiny/l1", "tiny/taylor", "tiny/halp"} <= set(rows)
    for m in ("l1", "taylor", "halp"):
        row = rows[f"tiny/{m}"]
        assert row["method"] == m and row["n"] == "2" and row["speed-up"].endswith("×")
        assert f"prune {m} (target_latency=0.8x)" in row["lineage"]
    for seed in (0, 1):
        assert (tmp_path / "tiny" / "base" / f"seed{seed}" / "base.latency.json").exists()  # shared by the prunes
        for m in ("l1", "taylor", "halp"):
            run = tmp_path / "tiny" / m / f"seed{seed}"
            lat = json.loads((run / "pruned.flops.json").read_text())["latency"]["prune"]
            assert lat["target"] == "0.8x" and lat["batch"] == 16 and lat["after_ms"] < lat["before_ms"]
            assert json.loads((run / "ft.profile.json").read_text())["ratios"]["speedup"]["16"] > 0
    assert json.loads((tmp_path / "tiny" / "halp" / "seed0" / "pruned.masks.json").read_text())["method"] == "halp"
