"""`make -C recipes/graphical-similarity SMOKE=1`: the paper-reproduction chain on a tiny model (~2 min).

Runs the same train → analyze → prune --reuse (per τ) → finetune → evaluate -o → profile -o → prunecli
report chain as the CIFAR-10 run in the default MODE=reference (a tiny Keras ResNet, Keras L2), τ 0.70
with two seeds (two base models), so a broken flag or file name in the recipe, or the report's seed
aggregation, fails here, not days into a GPU job.
"""

from __future__ import annotations

import json

from prunecli.io import checkpoint as ckpt
from tests.recipes import check_paper_rows, check_report_files, check_seed_row, report_rows, run_smoke

ARCH = "reference/resnet_keras_tiny"
SEEDS = {"0.80": [0], "0.70": [0, 1]}  # SEEDS_reference/resnet_keras_tiny-similarity-tau0.70 = 0 1


def test_similarity_recipe_smoke(tmp_path):
    md = run_smoke("graphical-similarity", tmp_path)
    rows = report_rows(md)
    base = check_seed_row(rows, tmp_path, f"{ARCH}-base", "base", [0, 1])
    assert base["method"] == "base" and base["lineage"] == "train resnet_keras_tiny (3 ep, lr 0.001)"
    ours = {f"{ARCH}-base"}
    for tau, seeds in SEEDS.items():
        setting = f"{ARCH}-similarity-tau{tau}"
        row = check_seed_row(rows, tmp_path, setting, "ft", seeds)
        pruned = rows[f"{setting}/pruned"]  # before fine-tuning: no evaluation, no training epochs
        assert pruned["n"] == str(len(seeds)) and pruned["top1"] == "—"
        assert row["method"] == pruned["method"] == "similarity"
        assert f"prune similarity (threshold={float(tau)})" in row["lineage"] and "finetune (2 ep" in row["lineage"]
        ours |= {setting, f"{setting}/pruned"}
        for s in seeds:
            run = tmp_path / setting / f"seed{s}"
            prof = json.loads((run / "ft.profile.json").read_text())
            assert prof["macs"] < prof["compare"]["macs"]
            assert prof["macs_conv_dense"] < prof["compare"]["macs_conv_dense"] < prof["compare"]["macs"]
            header = ckpt.read_header((run / "ft.safetensors").read_bytes())
            assert [e.options["seed"] for e in header.lineage if e.command in ("train", "finetune")] == [s, s]
            best, last = header.metrics["best_val_top1"], header.metrics["last_val_top1"]
            assert best >= last and last == json.loads((run / "ft.eval.json").read_text())["top1"]
    assert "over n = 1, 2 seed(s)" in md and "latency: median ms at batch 1" in md
    assert check_paper_rows(rows, "graphical-similarity") == 24
    assert set(rows) == ours | {r for r in rows if rows[r]["lineage"] == "(paper only)"}
    check_report_files(tmp_path, rows)
