"""EfficientFormerV2, Visformer and EfficientViT-MSRA attentions (issue 12, topic `heads`).

On the real models the pruner's group build ran past 380 s (Visformer, EfficientViT-MSRA) or
ended in a traceback (EfficientFormerV2). Now each is refused in seconds with one line naming
the layer type, nothing written, and the `--ignore` that line suggests prunes, runs and
reloads bit-identically in a fresh process, the attentions untouched."""

from __future__ import annotations

import json
import time

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import reload_in_fresh_process, run_cli, run_main

DATA = "synthetic:n=8,val=4,classes=4,size={}"
FAMILIES = {
    "efficientformerv2_tiny_test": ("efficientformer_v2.Attention2d", "Attention2d", 64),
    "visformer_tiny_test": ("visformer.Attention", "Attention", 64),
    "efficientvit_msra_tiny_test": ("efficientvit_msra.CascadedGroupAttention", "CascadedGroupAttention", 96),
}


def _attention_shapes(model, cls_name: str) -> list[tuple]:
    return [tuple(p.shape) for m in model.modules() if type(m).__name__ == cls_name for p in m.parameters()]


@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_refused_fast_then_the_suggested_ignore_prunes_and_reloads(model, tmp_path, capsys):
    kind, cls_name, size = FAMILIES[model]
    base = tmp_path / "base.safetensors"
    r = run_cli("train", "--model", model, "--data", DATA.format(size), "--epochs", "0", "--device", "cpu", "-o", base)
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = tmp_path / "p.safetensors"
    start = time.monotonic()
    code = run_main("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and time.monotonic() - start < 30
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and kind in errors[0] and "Traceback" not in err
    globs = [g.split("'")[0] for g in err.split("--ignore '")[1:]]
    assert globs
    args = [a for g in globs for a in ("--ignore", g)]
    r = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", *args, "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert res["macs_after"] < 0.97 * res["macs_before"]
    pruned, original = ckpt.load(out).model, ckpt.load(base).model
    assert _attention_shapes(pruned, cls_name) == _attention_shapes(original, cls_name) != []
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)
