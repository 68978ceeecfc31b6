"""`make -C recipes/isomorphic SMOKE=1`: the Isomorphic Pruning reproduction chain on tiny timm models.

Runs the same import/train → evaluate → prune --method isomorphic → finetune (hard distillation from
the source model) → evaluate -o → profile -o → prunecli report chain as the ImageNet run, in both modes:
MODE=reference (the paper's hand-set `--ratio`, as its scripts) and MODE=improved (`--target-macs`
searched), so a broken flag or file name in the recipe fails here, not days into a GPU job.
reference/convnext_smoke-isomorphic runs seeds 0 and 1 (two source models), so the report averages them.
"""

from __future__ import annotations

import json

from prunecli.io import checkpoint as ckpt
from tests.recipes import check_paper_rows, check_report_files, check_seed_row, report_rows, run_smoke

SMOKE = {"deit_smoke": "deit_distilled_tiny_test", "convnext_smoke": "convnext_tiny_test"}
PAPER_P = {"deit_smoke": 0.25, "convnext_smoke": 0.25}  # P_<target> in the Makefile
SEEDS = {("reference", "convnext_smoke"): [0, 1]}  # SEEDS_reference/convnext_smoke-isomorphic = 0 1


def test_isomorphic_recipe_smoke(tmp_path):
    md = run_smoke("isomorphic", tmp_path)
    rows = report_rows(md)
    check_seed_row(rows, tmp_path, "base-deit_distilled_tiny_test", "base", [0])
    check_seed_row(rows, tmp_path, "base-convnext_tiny_test", "base", [0, 1])
    for target, source in SMOKE.items():
        for mode in ("reference", "improved"):
            setting, seeds = f"{mode}/{target}-isomorphic", SEEDS.get((mode, target), [0])
            row = check_seed_row(rows, tmp_path, setting, "ft", seeds)
            check_seed_row(rows, tmp_path, setting, "pruned", seeds, key=f"{setting}/pruned")
            assert row["method"] == "isomorphic" and "finetune (1 ep" in row["lineage"]
            assert row["lineage"].startswith(f"train {source} (1 ep")
            assert ("KD" in row["lineage"]) == (target == "deit_smoke")  # DeiT: hard distillation
            for s in seeds:
                run = tmp_path / setting / f"seed{s}"
                prune = json.loads((run / "prune.json").read_text())
                options = json.loads((run / "pruned.masks.json").read_text())["options"]
                assert options["round_to"] == 2 and options["importance"] == "taylor" and options["seed"] == s
                ft = ckpt.read_header((run / "ft.safetensors").read_bytes())
                assert ft.lineage[-1].options["seed"] == s and ft.lineage[0].options["seed"] == s
                if target == "deit_smoke":  # the teacher is this seed's source model
                    assert ft.lineage[-1].options["teacher"].endswith(f"base-{source}/seed{s}/base.safetensors")
                if mode == "reference":  # the paper's ratio as given, no search
                    assert options["ratio"] == PAPER_P[target] and options["target_macs"] is None
                    assert prune["ratio"] == PAPER_P[target] and f"ratio={PAPER_P[target]}" in row["lineage"]
                else:  # the searched ratio lands within 2% of the MAC budget
                    assert options["ratio"] is None and options["target_macs"] == "0.5x"
                    assert "target_macs=0.5x" in row["lineage"]
                    prof = json.loads((run / "ft.profile.json").read_text())
                    assert abs(prof["macs"] / (0.5 * prof["compare"]["macs"]) - 1) <= 0.02
    masks = json.loads((tmp_path / "reference/deit_smoke-isomorphic" / "seed0" / "pruned.masks.json").read_text())
    assert masks["options"]["head_ratio"] == 0.3 and masks["options"]["head_dim_ratio"] == 0.3
    for mode in ("reference", "improved"):
        masks = json.loads((tmp_path / f"{mode}/convnext_smoke-isomorphic" / "seed0" / "pruned.masks.json").read_text())
        assert [b["name"] for b in masks["removed_blocks"]] == ["stages.2.blocks.0"]  # depth pruning ran
    assert "over n = 1, 2 seed(s)" in md
    assert check_paper_rows(rows, "isomorphic") == 9
    check_report_files(tmp_path, rows)
