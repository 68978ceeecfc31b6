"""`make -C recipes/graphical-similarity SMOKE=1`: the paper-reproduction chain on a tiny model (~1.5 min).

Runs the same train → analyze → prune --reuse (per τ) → finetune → evaluate → profile → collect.py
chain as the CIFAR-10 run in the default MODE=reference (a tiny Keras ResNet, Keras L2), so a broken
flag or file name in the recipe fails here, not days into a GPU job.
"""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows

SMOKE_TAUS = {"0.80", "0.70"}


def test_similarity_recipe_smoke(tmp_path):
    md = run_smoke("graphical-similarity", tmp_path)
    rows = table_rows(md)
    assert {(r["arch"], r["τ"]) for r in rows} == {("resnet_tiny", t) for t in SMOKE_TAUS | {"base"}}
    assert len(rows) == 3
    for r in rows:
        assert is_pct(r["top-1 % ref last"]) and is_pct(r["top-1 % ref best"])  # best: from base.log / ft.log
        assert r["top-1 % impr last"] == "—"  # MODE=improved did not run
    for tau in SMOKE_TAUS:
        prof = json.loads((tmp_path / f"reference-resnet_keras_tiny-similarity-tau{tau}" / "seed0" / "ft.profile.json")
                          .read_text())
        assert prof["macs"] < prof["compare"]["macs"]
        assert prof["macs_conv_dense"] < prof["compare"]["macs_conv_dense"] < prof["compare"]["macs"]
        row = next(r for r in rows if r["τ"] == tau)
        assert is_pct(row["top-1 % ref best"]) and float(row["top-1 % ref best"]) >= float(row["top-1 % ref last"])
        assert float(row["MACs ↓ ref"].rstrip("%")) > 0
    assert "`resnet_keras_tiny`: pretrain 3 ep (adam, wd 0.0001 keras" in md
    assert "best* = the highest over the fine-tuning epochs" in md
