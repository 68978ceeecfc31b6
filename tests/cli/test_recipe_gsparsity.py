"""`make -C recipes/gsparsity SMOKE=1`, MODE=reference then MODE=improved into one OUT: search →
compress → retrain → evaluate -o → profile -o → prunecli report on a tiny torchvision ResNet, the same
chain and file names as the ImageNet run. The reference setting runs seeds 0 and 1 (two base models);
results.md is the report's table: one row per setting and checkpoint, the seeds averaged, the repo
logs' rows (paper.json) listed beside ours."""

from __future__ import annotations

import json

from prunecli.io import checkpoint as ckpt
from tests.recipes import check_paper_rows, check_report_files, check_seed_row, report_rows, run_smoke

SEEDS = {"reference": [0, 1], "improved": [0]}  # SEEDS_reference/tv_resnet_tiny-gsparsity-mu0.3 = 0 1


def test_gsparsity_recipe_smoke(tmp_path, monkeypatch):
    run_smoke("gsparsity", tmp_path)  # MODE=reference, the default
    monkeypatch.setenv("MODE", "improved")
    md = run_smoke("gsparsity", tmp_path)  # reuses the base models; results.md now lists both modes
    rows = report_rows(md)
    check_seed_row(rows, tmp_path, "base-tv_resnet_tiny", "base", [0, 1])
    for mode, seeds in SEEDS.items():
        setting = f"{mode}/tv_resnet_tiny-gsparsity-mu0.3"
        row = check_seed_row(rows, tmp_path, setting, "retrain", seeds)
        compact = check_seed_row(rows, tmp_path, setting, "compact", seeds, key=f"{setting}/compact")
        check_seed_row(rows, tmp_path, setting, "search", seeds, key=f"{setting}/search")
        assert row["method"] == compact["method"] == "zero-groups" and "prune zero-groups (threshold=1e-06)" in \
            row["lineage"] and "finetune (1 ep, lr 0.1)" in row["lineage"]
        for s in seeds:
            run = tmp_path / setting / f"seed{s}"
            prune = json.loads((run / "prune.json").read_text())
            masks = json.loads((run / "compact.masks.json").read_text())
            assert prune["method"] == "zero-groups" and masks["options"]["threshold"] == 1e-6
            assert masks["options"]["fold"] == ("reference" if mode == "reference" else "exact-1x1")
            # our folding is exact but at padded 3×3 borders: a bound on the measured change, not equality
            assert prune["max_output_diff"] <= 0.05 * prune["output_scale"]
            search = ckpt.read_header((run / "search.safetensors").read_bytes())
            assert search.lineage[-1].options["seed"] == s and search.lineage[-1].options["epochs"] == 2
            assert bool(search.lineage[-1].options.get("prox_snap")) == (mode == "improved")
            zeros = search.metrics["zero_groups"]
            top1 = {k: json.loads((run / f"{k}.eval.json").read_text())["top1"] for k in ("search", "compact")}
            assert top1["search"] > 50
            if mode == "reference":
                # The reference's convex step shrinks a filter whose prox is 0 by (1 − ε) per step: 2 epochs
                # of 23 steps at ε = 1e-3 leave it at 95% of its norm, far above 1e-6, so nothing is removed.
                assert zeros == 0 and top1["compact"] == top1["search"]
            else:  # --prox-snap zeroes filters at once: the compact model is smaller
                assert zeros > 0
                prof = json.loads((run / "retrain.profile.json").read_text())
                assert prof["macs"] < prof["compare"]["macs"] and prof["params"] < prof["compare"]["params"]
    assert "over n = 1, 2 seed(s)" in md
    assert check_paper_rows(rows, "gsparsity") == 9
    check_report_files(tmp_path, rows)
