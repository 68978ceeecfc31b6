"""timm attention variants (issue 12 items 2 and 5): Swin prunes with consistent heads and reloads;
variants we cannot prune consistently (PVT-v2, LeViT, EfficientViT, CoaT) are refused before
pruning with one line, and the `--ignore` it suggests then works."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import reload_in_fresh_process, run_cli, run_main

DATA = "synthetic:n=16,val=8,classes=4"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attn")
    out = {}
    for model in ("swin_tiny_test", "pvt_v2_tiny_test"):
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


@pytest.mark.parametrize("extra", [[], ["--method", "isomorphic", "--head-ratio", "0.5", "--data", DATA,
                                        "--calib-batches", "1", "--batch-size", "4"]])
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


def test_pvt_refused_before_pruning_then_ignore_prunes_the_mlps(bases, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    code = run_main("prune", bases["pvt_v2_tiny_test"], "--method", "l1", "--ratio", "0.3", "-o", out)
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pvt_v2.Attention" in errors[0] and "Traceback" not in err
    assert "--ignore '*.attn'" in err  # the one pattern that matches exactly these attentions
    r = run_cli("prune", bases["pvt_v2_tiny_test"], "--method", "l1", "--ratio", "0.3",
                "--ignore", "*.attn", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert json.loads(r.stdout)["macs_after"] < json.loads(r.stdout)["macs_before"]
    pruned, base = ckpt.load(out).model, ckpt.load(bases["pvt_v2_tiny_test"]).model
    for (name, a), b in zip(pruned.named_modules(), base.modules()):
        if ".attn" in name and isinstance(a, torch.nn.Linear):  # the attention is untouched
            assert a.weight.shape == b.weight.shape, name
    assert any(a.fc1.out_features < b.fc1.out_features for a, b in
               zip(pruned.stages[0].blocks[0].modules(), base.stages[0].blocks[0].modules()) if hasattr(a, "fc1"))
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


@pytest.mark.parametrize("family", ["coat"])
def test_other_refused_families_and_their_ignore(family):
    """Tiny CoaT: refused naming the layer type; the suggested --ignore prunes."""
    import timm.models.coat as coat
    import torch_pruning as tp

    from prunecli.errors import UserError
    from prunecli.pruning.structured import PrunePlan, prune_at

    build, size, kind, head = {
        "coat": (lambda: coat.CoaT(img_size=32, patch_size=4, embed_dims=(16, 16, 32, 32), serial_depths=(1, 1, 1, 1),
                                   num_heads=8, mlp_ratios=(2, 2, 2, 2), num_classes=4), 32,
                 "coat.FactorAttnConvRelPosEnc", ("head",)),
    }[family]
    torch.manual_seed(0)
    model, shape = build().eval(), (3, size, size)
    with pytest.raises(UserError) as refused:
        prune_at(model, shape, tp.importance.GroupMagnitudeImportance(p=1), 0.3, PrunePlan(), head)
    text = str(refused.value)
    assert kind in text and "\n" not in text
    before = sum(p.numel() for p in model.parameters())
    globs = [g.split("'")[0] for g in text.split("--ignore '")[1:]]
    prune_at(model, shape, tp.importance.GroupMagnitudeImportance(p=1), 0.3, PrunePlan(ignore=globs), head)
    assert sum(p.numel() for p in model.parameters()) < before
    assert model(torch.randn(2, *shape)).shape == (2, 4)
