"""`make -C recipes/isomorphic SMOKE=1`: the Isomorphic Pruning reproduction chain on tiny timm models.

Runs the same import/train → evaluate → prune --method isomorphic → finetune (hard distillation from
the source model) → evaluate → profile → collect.py chain as the ImageNet run, in both modes:
MODE=reference (the paper's hand-set `--ratio`, as its scripts) and MODE=improved (`--target-macs`
searched), so a broken flag or file name in the recipe fails here, not days into a GPU job.
"""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows

SMOKE = {"deit_smoke": "deit_distilled_tiny_test", "convnext_smoke": "convnext_tiny_test"}
PAPER_P = {"deit_smoke": 0.25, "convnext_smoke": 0.25}  # P_<target> in the Makefile


def test_isomorphic_recipe_smoke(tmp_path):
    md = run_smoke("isomorphic", tmp_path)
    rows = {(r["model"], r["run"]): r for r in table_rows(md)}
    expected = {(s, "ours") for s in SMOKE.values()} | {(t, f"ours {m}") for t in SMOKE for m in ("reference",
                                                                                                   "improved")}
    assert set(rows) == expected  # no paper rows for the smoke models
    for source in SMOKE.values():
        assert is_pct(rows[source, "ours"]["top-1 %"])
    for target, source in SMOKE.items():
        for mode in ("reference", "improved"):
            row = rows[target, f"ours {mode}"]
            assert row["source"] == source and row["fine-tuning"] == "1 ep, last"
            assert is_pct(row["top-1 % pruned"]) and is_pct(row["top-1 %"])
            run = tmp_path / f"{mode}-{target}-isomorphic" / "seed0"
            prune = json.loads((run / "prune.json").read_text())
            options = json.loads((run / "pruned.masks.json").read_text())["options"]
            assert options["round_to"] == 2 and options["importance"] == "taylor"
            if mode == "reference":  # the paper's ratio as given, no search
                assert options["ratio"] == PAPER_P[target] and options["target_macs"] is None
                assert prune["ratio"] == PAPER_P[target] and row["budget"].startswith(f"p {PAPER_P[target]:g}")
            else:  # the searched ratio lands within 2% of the MAC budget
                assert options["ratio"] is None and options["target_macs"] == "0.5x"
                assert row["budget"].startswith(f"0.5x → p {prune['ratio']:.4f}")
                assert abs(float(row["MACs / target"]) - 1) <= 0.02
                prof = json.loads((run / "ft.profile.json").read_text())
                assert abs(prof["macs"] / (0.5 * prof["compare"]["macs"]) - 1) <= 0.02
    masks = json.loads((tmp_path / "reference-deit_smoke-isomorphic" / "seed0" / "pruned.masks.json").read_text())
    assert masks["options"]["head_ratio"] == 0.3 and masks["options"]["head_dim_ratio"] == 0.3
    for mode in ("reference", "improved"):
        masks = json.loads((tmp_path / f"{mode}-convnext_smoke-isomorphic" / "seed0" / "pruned.masks.json").read_text())
        assert [b["name"] for b in masks["removed_blocks"]] == ["stages.2.blocks.0"]  # depth pruning ran
