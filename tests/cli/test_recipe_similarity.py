"""`make -C recipes/graphical-similarity SMOKE=1`: the paper-reproduction chain on a tiny model (~1.5 min).

Runs the same train → analyze → prune --reuse (per τ) → finetune → evaluate → profile → collect.py
chain as the CIFAR-10 run, so a broken flag or file name in the recipe fails here, not days into a GPU job.
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
        assert is_pct(r["top-1 % ours"])
    for tau in SMOKE_TAUS:
        prof = json.loads((tmp_path / "resnet_tiny" / f"tau{tau}" / "profile.json").read_text())
        assert prof["macs"] < prof["compare"]["macs"]
        row = next(r for r in rows if r["τ"] == tau)
        assert float(row["MACs ↓ ours"].rstrip("%")) > 0
