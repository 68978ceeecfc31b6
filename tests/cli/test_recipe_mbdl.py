"""`make -C recipes/mbdl SMOKE=1`: the MBDL chain on the tiny DEQ and phantoms, tabulated by
`prunecli report`: zero-filled baseline, base, one-shot, the three strategies with the GT-free ones
also adapted on the test split, all evaluated on the held-out test split; two seeds for one setting."""

from __future__ import annotations

import json

from tests.recipes import run_smoke, table_rows


def test_mbdl_recipe_smoke(tmp_path):
    md = run_smoke("mbdl", tmp_path)
    rows = {row["setting"]: row for row in table_rows(md)}
    assert set(rows) == {"zero-filled", "deq/base", "deq/r0.4/oneshot", "deq/r0.4/supervised", "deq/r0.4/distill",
                         "deq/r0.4/selfsup", "deq/r0.4/distill-tta", "deq/r0.4/selfsup-tta"}
    assert "Protocol: psnr: evaluate (test)" in md
    assert "train 32, val 8, test 8 slices" in md  # phantom:n=32,val=8,test=8: the split sizes are printed
    # two seeds of the supervised setting, so its base and one-shot model have two seeds too
    assert {k: rows[k]["n"] for k in ("deq/base", "deq/r0.4/oneshot", "deq/r0.4/supervised", "deq/r0.4/distill")} == \
        {"deq/base": "2", "deq/r0.4/oneshot": "2", "deq/r0.4/supervised": "2", "deq/r0.4/distill": "1"}
    psnr = {k: float(r["psnr"].split(" ± ")[0]) for k, r in rows.items()}
    assert all(10 < v < 60 for v in psnr.values())
    assert psnr["zero-filled"] < psnr["deq/r0.4/oneshot"] < psnr["deq/base"]
    assert all(0 < float(r["ssim"].split(" ± ")[0]) <= 1 for r in rows.values())
    assert rows["deq/r0.4/supervised"]["speed-up"].endswith("×")  # a time ratio base / pruned, not a percentage
    assert "adapt-on test" in rows["deq/r0.4/distill-tta"]["lineage"]
    assert "adapt-on" not in rows["deq/r0.4/distill"]["lineage"] and "tol 0.004" in rows["deq/r0.4/distill"]["lineage"]
    assert rows["zero-filled"]["params"] == "0"

    run = tmp_path / "deq" / "r0.4"
    tta = json.loads((run / "selfsup-tta" / "seed0" / "ft.eval.json").read_text())
    assert tta["split"] == "test" and tta["samples"] == 8
    prof = json.loads((run / "supervised" / "seed0" / "ft.profile.json").read_text())
    assert prof["solver"]["tol"] == prof["compare"]["solver"]["tol"] == 1e-4  # timed at one tolerance
    assert prof["settings"]["stat"] == "mean"
    header = json.loads((run / "supervised" / "seed1" / "ft.eval.json").read_text())
    assert header["split_sizes"] == {"train": 32, "val": 8, "test": 8}
