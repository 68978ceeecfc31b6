"""`make -C recipes/isomorphic SMOKE=1`: the Isomorphic Pruning reproduction chain on tiny timm models (~1.5 min).

Runs the same import/train → evaluate → prune --method isomorphic --target-macs → finetune (hard
distillation from the source model) → evaluate → profile → collect.py chain as the ImageNet run, so a
broken flag or file name in the recipe fails here, not days into a GPU job.
"""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows

SMOKE = {"deit_smoke": "deit_distilled_tiny_test", "convnext_smoke": "convnext_tiny_test"}


def test_isomorphic_recipe_smoke(tmp_path):
    md = run_smoke("isomorphic", tmp_path)
    rows = {r["model"]: r for r in table_rows(md)}
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
