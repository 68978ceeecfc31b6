"""`make -C recipes/gsparsity SMOKE=1`, MODE=reference then MODE=improved into one OUT: search →
compress → retrain → evaluate → profile on a tiny torchvision ResNet (~1 min each on two free cores),
the same chain and file names as the ImageNet run; results.md has the logs' row and one row per mode."""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows


def test_gsparsity_recipe_smoke(tmp_path, monkeypatch):
    run_smoke("gsparsity", tmp_path)  # MODE=reference, the default
    monkeypatch.setenv("MODE", "improved")
    md = run_smoke("gsparsity", tmp_path)  # reuses the base model; results.md now lists both modes
    logs, ref, imp = table_rows(md)
    assert logs["μ"] == ref["μ"] == imp["μ"] == "0.3" and logs["MACs"] == "—"
    assert ref["run"] == "ours, reference" and imp["run"] == "ours, improved"
    assert "convex step" in ref["protocol"] and "fold reference" in ref["protocol"]
    assert "snap, BN recal. 10" in imp["protocol"] and "fold exact-1x1" in imp["protocol"]
    assert all("search 2 ep" in r["protocol"] and "last epoch" in r["protocol"] for r in (ref, imp))
    for mode, row in (("reference", ref), ("improved", imp)):
        assert float(row["top-1 search"]) > 50 and is_pct(row["top-1 compact"]) and is_pct(row["top-1 retrain"])
        run = tmp_path / f"{mode}-tv_resnet_tiny-gsparsity-mu0.3" / "seed0"
        prune = json.loads((run / "prune.json").read_text())
        masks = json.loads((run / "compact.masks.json").read_text())
        assert prune["method"] == "zero-groups" and masks["options"]["threshold"] == 1e-6
        # our folding is exact but at padded 3×3 borders: a bound on the measured change, not equality
        assert prune["max_output_diff"] <= 0.05 * prune["output_scale"]
    # The reference's convex step shrinks a filter whose prox is 0 by (1 − ε) per step: 2 epochs of
    # 23 steps at ε = 1e-3 leave it at 95% of its norm, far above 1e-6, so nothing is removed.
    assert ref["zero filters"] == "0.0%" and ref["top-1 compact"] == ref["top-1 search"]
    # --prox-snap zeroes filters at once: the compact model is smaller.
    assert float(imp["zero filters"].rstrip("%")) > 0
    prof = json.loads((tmp_path / "improved-tv_resnet_tiny-gsparsity-mu0.3" / "seed0" / "retrain.profile.json").read_text())
    assert prof["macs"] < prof["compare"]["macs"] and prof["params"] < prof["compare"]["params"]
