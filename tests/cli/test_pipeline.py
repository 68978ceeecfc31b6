"""The train → prune → finetune → evaluate → info chain through the real CLI, on tiny data."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import FlopsSidecar, MasksSidecar
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli, run_proc


@pytest.fixture(scope="module")
def pruned(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "p.safetensors"
    r = run_cli("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.5", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out, json.loads(r.stdout)


def test_train_writes_self_describing_checkpoint(tiny_ckpt):
    header = ckpt.read_header(tiny_ckpt.read_bytes())
    assert header.model.name == "resnet_tiny" and header.num_classes == 4
    assert header.input_shape == [3, 32, 32] and header.data.spec == SYNTH
    assert [e.command for e in header.lineage] == ["train"]
    assert header.metrics["epoch"] == 1 and 0 <= header.metrics["val_top1"] <= 100
    assert tiny_ckpt.with_name("base.state.pt").is_file()


def test_prune_shrinks_model_and_writes_valid_sidecars(tiny_ckpt, pruned):
    out, result = pruned
    assert result["macs_after"] < 0.5 * result["macs_before"]
    masks = MasksSidecar.model_validate_json(out.with_name("p.masks.json").read_text())
    flops = FlopsSidecar.model_validate_json(out.with_name("p.flops.json").read_text())
    assert masks.parent_sha256 == ckpt.sha256(tiny_ckpt.read_bytes())
    assert flops.after.macs == result["macs_after"] and flops.before.macs == result["macs_before"]
    weights = load_file(out)
    by_name = {layer.name: layer for layer in masks.layers}
    conv = by_name["layer1.0.conv1"]
    assert conv.channels_before == 8 and conv.channels_after == 4
    assert weights["layer1.0.conv1.weight"].shape[0] == 4
    assert sorted(conv.kept + conv.removed) == list(range(8))
    assert "fc" not in by_name  # the classifier is protected
    assert weights["fc.weight"].shape[0] == 4


def test_l1_matches_hand_written_torch_pruning(tiny_ckpt, pruned):
    """Same kept channels and weights as a plain Torch-Pruning script doing the same work."""
    import torch_pruning as tp

    out, _ = pruned
    model = ckpt.load(tiny_ckpt).model
    pruner = tp.pruner.BasePruner(model, torch.randn(1, 3, 32, 32), tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()
    ours = load_file(out)
    for key, value in model.state_dict().items():
        assert torch.equal(ours[key], value), key
    masks = MasksSidecar.model_validate_json(out.with_name("p.masks.json").read_text())
    conv = next(layer for layer in masks.layers if layer.name == "layer1.0.conv1")
    assert conv.importance.kept_mean > conv.importance.removed_mean


def test_pruned_checkpoint_reloads_identically_in_fresh_process(pruned, tmp_path):
    out, _ = pruned
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


@pytest.mark.parametrize("model", ["vit_tiny_test", "convnext_tiny_test", "densenet_tiny", "vgg_tiny",
                                   "tv_resnet_tiny"])
def test_prune_any_family_through_cli_and_reload(model, tmp_path):
    """Attention heads (ViT), LayerNorm2d (ConvNeXt), concat (DenseNet), plain chains (VGG) and
    bottlenecks (torchvision ResNet) all prune through the CLI and reload bit-identically."""
    base, out = tmp_path / "base.safetensors", tmp_path / "p.safetensors"
    r = run_cli("train", "--model", model, "--data", "synthetic:n=8,val=4,classes=4", "--epochs", "0",
                "--device", "cpu", "-o", base)
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = run_cli("prune", base, "--method", "l1", "--ratio", "0.4", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    result = json.loads(r.stdout)
    assert result["macs_after"] < 0.8 * result["macs_before"]
    assert ckpt.read_header(out.read_bytes()).structure
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)
    reloaded = ckpt.load(out).model
    if hasattr(reloaded, "get_classifier"):  # timm's own width attributes follow the pruned layers
        assert reloaded.num_features == reloaded.get_classifier().in_features


def test_target_macs_meets_budget(tiny_ckpt, tmp_path):
    r = run_cli("prune", tiny_ckpt, "--method", "l2", "--target-macs", "0.6x", "-o", tmp_path / "t.safetensors",
                "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert 0.5 * res["macs_before"] < res["macs_after"] <= 0.6 * res["macs_before"]


@pytest.mark.parametrize("method", ["taylor", "random"])
def test_other_methods(tiny_ckpt, tmp_path, method):
    args = ["prune", tiny_ckpt, "--method", method, "--ratio", "0.3", "--global", "-o", tmp_path / "m.safetensors",
            "--json", "--data", SYNTH, "--calib-batches", "2"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    first = json.loads(r.stdout)
    assert first["macs_after"] < first["macs_before"]
    r2 = run_cli(*args[:-7], "-o", tmp_path / "m2.safetensors", "--json", "--data", SYNTH, "--calib-batches", "2")
    assert r2.exit_code == 0, r2.output
    assert load_file(tmp_path / "m.safetensors").keys() == load_file(tmp_path / "m2.safetensors").keys()
    a = MasksSidecar.model_validate_json((tmp_path / "m.masks.json").read_text())
    b = MasksSidecar.model_validate_json((tmp_path / "m2.masks.json").read_text())
    assert [x.kept for x in a.layers] == [x.kept for x in b.layers]  # deterministic (seeded) decisions


def test_finetune_with_teacher_and_lineage(tiny_ckpt, pruned, tmp_path):
    out, _ = pruned
    ft = tmp_path / "ft.safetensors"
    r = run_cli("finetune", out, "--data", SYNTH, "--epochs", "1", "--batch-size", "32", "--teacher", tiny_ckpt,
                "--device", "cpu", "-o", ft, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    header = ckpt.read_header(ft.read_bytes())
    assert [e.command for e in header.lineage] == ["train", "prune", "finetune"]
    assert header.lineage[-1].parent_sha256 == ckpt.sha256(out.read_bytes())
    assert header.lineage[-1].options["teacher"] == str(tiny_ckpt)
    assert header.structure == ckpt.read_header(out.read_bytes()).structure
    ev = run_cli("evaluate", ft, "--data", SYNTH, "--json", "--device", "cpu")
    result = json.loads(ev.stdout)
    assert abs(result["top1"] - header.metrics["val_top1"]) < 1e-6  # same number as the training log


def test_pipe_form(tiny_ckpt):
    """`prunecli prune - ... -o - < a | prunecli evaluate - ...` works through real processes."""
    pruned = run_proc("prune", "-", "--method", "l1", "--ratio", "0.25", "-o", "-", input=tiny_ckpt.read_bytes())
    assert pruned.returncode == 0, pruned.stderr.decode()
    assert pruned.stdout[:8] and ckpt.read_header(pruned.stdout).model.name == "resnet_tiny"
    ev = run_proc("evaluate", "-", "--data", SYNTH, "--json", "--device", "cpu", input=pruned.stdout)
    assert ev.returncode == 0, ev.stderr.decode()
    assert json.loads(ev.stdout)["samples"] == 48


def test_info_and_ls(pruned):
    out, _ = pruned
    r = run_cli("info", out, "--json")
    doc = json.loads(r.stdout)
    assert doc["model"]["name"] == "resnet_tiny" and doc["structure"]["layer1.0.conv1"]["out_channels"] == 4
    for what in ("models", "data", "methods"):
        r = run_cli("ls", what, "--json")
        assert r.exit_code == 0, r.output
        names = {row["name"] for row in json.loads(r.stdout)}
        assert {"models": "resnet20", "data": "digits", "methods": "l1"}[what] in names


def test_import_pth_weights_only(tmp_path):
    from prunecli.models import build_model

    model, _, _ = build_model("resnet_tiny", num_classes=4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pth")
    r = run_cli("import", tmp_path / "w.pth", "--model", "resnet_tiny", "--num-classes", "4",
                "-o", tmp_path / "w.safetensors")
    assert r.exit_code == 0, r.output + repr(r.exception)
    loaded = ckpt.load(tmp_path / "w.safetensors").model
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_prune_twice_keeps_lineage_and_compares_sidecar_with_unpruned(tiny_ckpt, pruned, tmp_path):
    out, first = pruned
    again = tmp_path / "again.safetensors"
    r = run_cli("prune", out, "--method", "l1", "--ratio", "0.5", "-o", again, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    second = json.loads(r.stdout)
    assert second["macs_before"] == first["macs_after"] and second["macs_after"] < first["macs_after"]
    flops = FlopsSidecar.model_validate_json((tmp_path / "again.flops.json").read_text())
    assert flops.before.macs == first["macs_before"] and flops.after.macs == second["macs_after"]
    header = ckpt.read_header(again.read_bytes())
    assert [e.command for e in header.lineage] == ["train", "prune", "prune"]
    assert header.structure["layer1.0.conv1"]["out_channels"] == 2
