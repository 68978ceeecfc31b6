"""Any torchvision classifier as `tv:NAME` (issue 12 item 5): built on demand, head protected, prunes, reloads."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.errors import UserError
from prunecli.models import build_model, get_entry
from tests.conftest import pruned_json, reload_in_fresh_process, run_cli, untrained


@pytest.mark.parametrize(("name", "head"), [
    ("resnet18", "fc"), ("squeezenet1_1", "classifier.1"), ("mobilenet_v3_small", "classifier.3"),
    ("vit_b_16", "heads.head"), ("googlenet", "fc"), ("convnext_tiny", "classifier.2"),
])
def test_the_classifier_is_the_layer_protected(name, head):
    """The protected layer is the one producing the logits: its output width is the class count."""
    entry = get_entry(f"tv:{name}")
    assert entry.protected == (head,) and entry.family == "torchvision"
    model, _, _ = build_model(f"tv:{name}", num_classes=7)
    layer = dict(model.named_modules())[head]
    assert getattr(layer, "out_features", getattr(layer, "out_channels", None)) == 7


def test_aux_heads_are_left_out():
    model, _, _ = build_model("tv:googlenet", num_classes=5)
    assert model.aux1 is None and not model.aux_logits
    assert get_entry("tv:inception_v3").input_shape == (3, 299, 299)


def test_unknown_name_is_one_line_with_suggestions():
    with pytest.raises(UserError, match=r"unknown torchvision model 'resnet1' \(did you mean resnet18"):
        get_entry("tv:resnet1")
    r = run_cli("train", "--model", "tv:resnet1", "--data", "synthetic", "--epochs", "0", "-o", "x.safetensors")
    assert isinstance(r.exception, UserError) and "unknown torchvision model" in str(r.exception)


def test_tv_model_prunes_and_reloads(tmp_path):
    base, out = untrained("tv:mobilenet_v3_small", tmp_path / "a.safetensors"), tmp_path / "b.safetensors"
    result = pruned_json(base, out, "--method", "l1", "--ratio", "0.3")
    assert result["macs_after"] < 0.8 * result["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)


def test_a_graph_torch_pruning_cannot_build_is_one_line(tmp_path):
    """ShuffleNet's channel shuffle (view → transpose → view) breaks Torch-Pruning 1.6's reshape
    index mapping (ZeroDivisionError): refused in one line, nothing written, not a traceback."""
    base, out = untrained("tv:shufflenet_v2_x0_5", tmp_path / "s.safetensors"), tmp_path / "p.safetensors"
    r = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    assert isinstance(r.exception, UserError), repr(r.exception)
    assert "cannot build the dependency graph" in str(r.exception) and not out.exists()


def test_mnasnet_reloads_its_versioned_modules(tmp_path):
    """torchvision's MNASNet reads its state-dict version while loading; safetensors keeps none."""
    base, out = untrained("tv:mnasnet0_5", tmp_path / "m.safetensors"), tmp_path / "p.safetensors"
    pruned_json(base, out, "--method", "l1", "--ratio", "0.3")
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_import_keeps_module_versions(tmp_path):
    """A torchvision state dict saved with torch.save carries per-module versions MNASNet needs."""
    from prunecli.models import build_model as build

    model, _, _ = build("tv:mnasnet0_5", num_classes=4)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    out = tmp_path / "m.safetensors"
    r = run_cli("import", tmp_path / "m.pth", "--model", "tv:mnasnet0_5", "-o", out)
    assert r.exit_code == 0, repr(r.exception)
    from prunecli.io import checkpoint as ckpt

    assert ckpt.load(out).header.num_classes == 4  # inferred from the classifier


def test_torchvision_vit_prunes_the_same_positions_in_every_head(tmp_path):
    """nn.MultiheadAttention: the residual indices cut are the same in-head positions of every
    head, so head h's q/k/v rows after pruning are head h's own rows (tv_blocks.py)."""
    from prunecli.io import checkpoint as ckpt

    base, out = untrained("tv_vit_tiny", tmp_path / "v.safetensors"), tmp_path / "p.safetensors"
    pruned_json(base, out, "--method", "l1", "--ratio", "0.25")
    removed = {r["name"]: r["removed"] for r in json.loads((tmp_path / "p.masks.json").read_text())["layers"]}
    cut = sorted(removed["conv_proj"])
    per_head = [[i - 16 * h for i in cut if 16 * h <= i < 16 * (h + 1)] for h in range(4)]
    assert len(cut) == 16 and all(p == per_head[0] for p in per_head)
    before, after = ckpt.load(base).model, ckpt.load(out).model
    kept = [i for i in range(64) if i not in cut]
    a0, a1 = before.encoder.layers[0].self_attention, after.encoder.layers[0].self_attention
    assert (after.hidden_dim, a1.embed_dim, a1.head_dim, a1.num_heads) == (48, 48, 12, 4)
    for part in range(3):  # q, k, v rows and input columns: the kept residual channels, in order
        rows = [part * 64 + i for i in kept]
        assert torch.equal(a1.in_proj_weight[part * 48:(part + 1) * 48], a0.in_proj_weight[rows][:, kept])
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)
