"""`make -C recipes/halp SMOKE=1`: HALP, L1 and Taylor pruned to the same measured latency on a tiny
ResNet (digits, CPU), fine-tuned, evaluated, profiled; a few minutes on a loaded machine, so slow."""

from __future__ import annotations

import json

import pytest

from tests.recipes import is_pct, run_smoke, table_rows


@pytest.mark.slow
def test_halp_recipe_smoke(tmp_path):
    rows = table_rows(run_smoke("halp", tmp_path))
    assert [r["method"] for r in rows] == ["l1", "taylor", "halp"]
    assert all(is_pct(r["top-1 (%)"]) and float(r["MAC ratio"]) > 1 for r in rows)
    run = tmp_path / "tiny" / "seed0"
    assert (run / "base.latency.json").exists()  # the table the three prunes share
    for m in ("l1", "taylor", "halp"):
        lat = json.loads((run / f"{m}.flops.json").read_text())["latency"]["prune"]
        assert lat["target"] == "0.8x" and lat["batch"] == 16 and lat["after_ms"] < lat["before_ms"]
        assert json.loads((run / f"{m}_ft.profile.json").read_text())["ratios"]["speedup"]["16"] > 0
    assert json.loads((run / "halp.masks.json").read_text())["method"] == "halp"
