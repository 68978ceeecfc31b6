"""`make -C recipes/mtp-layer-similarity SMOKE=1`: the MTP chain on tiny models (~1.5 min).

train → evaluate → prune --method l1-unstructured (oneshot, iterative, layerwise) → evaluate →
analyze --method cka (self and between schedules) → collect.py, as the real run.
"""

from __future__ import annotations

import json

from tests.recipes import is_pct, run_smoke, table_rows


def test_mtp_recipe_smoke(tmp_path):
    md = run_smoke("mtp-layer-similarity", tmp_path)
    acc, cka = md.split("## CKA")
    rows = table_rows(acc)
    assert {(r["pair"], r["schedule"]) for r in rows} == {
        ("densenet_smoke", k) for k in ("oneshot", "iterative", "layerwise")}
    for r in rows:
        assert abs(float(r["sparsity reached"]) - 0.8) < 1e-3
        assert is_pct(r["top-1 ours"]) and r["top-1 report"] == "—"
    epochs = {(r["pair"], r["schedule"]): int(r["FT epochs"]) for r in rows}
    assert epochs[("densenet_smoke", "iterative")] == 8 and epochs[("densenet_smoke", "oneshot")] == 1
    assert len(table_rows(cka)) == 3
    steps = json.loads((tmp_path / "densenet_smoke" / "layerwise_0.8.masks.json").read_text())["steps"]
    assert steps[0]["unit"] == "features.conv0" and steps[-1]["unit"] == "classifier"
    assert len(steps) == 5  # conv0+norm0, 2 dense blocks, 1 transition, classifier (DenseNet-169: 9)
    assert len(list((tmp_path / "densenet_smoke" / "iterative_0.8.steps").glob("*.safetensors"))) == 8
    assert (tmp_path / "densenet_smoke" / "cka_0.8_oneshot-iterative.cka.png").read_bytes()[:4] == b"\x89PNG"
