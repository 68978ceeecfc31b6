"""GSparsity end to end: ProxSGD search (`train --optimizer proxsgd`), zero-group removal into a
dense model (`prune --method zero-groups`), retraining; on CIFAR ResNet-20 and a tiny torchvision ResNet.

The searches here use our improvements (`--prox-snap --bn-recalibrate`): the reference's convex step
needs thousands of steps to bring a filter below 1e-6 (`tests/unit/test_proxsgd.py` checks that step;
`test_default_search_is_the_reference` the CLI defaults)."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli, run_main

DATA = "digits"  # learnable in a few epochs: the accuracy comparison means something
EPOCHS = {"resnet20": ("2", "1"), "tv_resnet_tiny": ("3", "2")}  # base, search


@pytest.fixture(scope="module", params=["resnet20", "tv_resnet_tiny"])
def searched(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    base, search = folder / "base.safetensors", folder / "search.safetensors"
    base_epochs, search_epochs = EPOCHS[request.param]
    r = run_cli("train", "--model", request.param, "--data", DATA, "--epochs", base_epochs, "--lr", "0.05",
                "--device", "cpu", "-o", base)
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = run_cli("train", "--init", base, "--data", DATA, "--epochs", search_epochs, "--optimizer", "proxsgd",
                "--lr", "0.01", "--mu", "0.3", "--prunable", "conv12", "--mu-scale", "layer2.*=2", "--device", "cpu",
                "--prox-snap", "--bn-recalibrate", "20", "-o", search, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return folder, json.loads(r.stdout)



def test_search_reports_zero_groups_and_compressed_macs(searched):
    folder, metrics = searched
    assert 0 < metrics["zero_groups"] < 1
    header = ckpt.read_header((folder / "search.safetensors").read_bytes())
    assert header.metrics["zero_groups"] == metrics["zero_groups"]
    assert header.lineage[-1].options["optimizer"] == "proxsgd" and header.lineage[-1].options["mu"] == 0.3
    assert metrics["macs_ratio"] > 1


def test_compact_model_is_smaller_and_close(searched):
    """Our folding (exact-1x1): the output moves only where a padded 3×3 conv meets the image border;
    the test bounds that measured difference instead of claiming equal outputs or accuracy."""
    folder, metrics = searched
    compact = folder / "compact.safetensors"
    r = run_cli("prune", folder / "search.safetensors", "--method", "zero-groups", "--fold", "exact-1x1",
                "-o", compact, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert metrics["macs_compressed"] <= res["macs_after"] < res["macs_before"]  # all-zero branches stay
    assert res["max_output_diff"] < 0.05 * res["output_scale"]  # folded; only 3×3 borders differ
    tops = []
    for path in (folder / "search.safetensors", compact):
        r = run_cli("evaluate", path, "--data", DATA, "--device", "cpu", "--json")
        tops.append(json.loads(r.stdout)["top1"])
    assert tops[0] > 20 and abs(tops[0] - tops[1]) <= 2.0  # above chance (10%); a few of 360 images may flip
    masks = json.loads((folder / "compact.masks.json").read_text())
    assert masks["method"] == "zero-groups" and masks["layers"] and masks["options"]["fold"] == "exact-1x1"
    search = ckpt.load(folder / "search.safetensors").model
    named = dict(search.named_modules())
    for layer in masks["layers"]:  # only filters that really were zero went
        norms = named[layer["name"]].weight.detach()[layer["removed"]].flatten(1).norm(dim=1)
        assert bool((norms < 1e-6).all())
    here, fresh = reload_in_fresh_process(compact, folder)
    assert torch.equal(here, fresh)


def test_default_compression_is_the_reference(searched):
    """No --threshold, no --fold: the paper's 1e-6 and its compression (constants dropped)."""
    folder, metrics = searched
    out = folder / "reference.safetensors"
    r = run_cli("prune", folder / "search.safetensors", "--method", "zero-groups", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert res["macs_after"] == metrics["macs_compressed"] < res["macs_before"]  # as the search reported
    assert res["max_output_diff"] > 0
    masks = json.loads((folder / "reference.masks.json").read_text())
    assert masks["options"]["threshold"] == 1e-6 and masks["options"]["fold"] == "reference"


def test_folding_keeps_a_1x1_consumer_exact(tmp_path):
    """Zero filters of bottleneck conv2 feed a 1×1 conv3 through BN (β > 0) and ReLU: with the
    constant folded into bn3's running mean (--fold exact-1x1) the compact model computes the same;
    with the reference's compression (the constant dropped), not."""
    base = tmp_path / "b.safetensors"
    assert run_cli("train", "--model", "tv_resnet_tiny", "--data", SYNTH, "--epochs", "1", "--device", "cpu",
                   "-o", base).exit_code == 0
    loaded = ckpt.load(base)
    with torch.no_grad():
        for block in (loaded.model.layer1[0], loaded.model.layer3[0]):
            block.conv2.weight[:3] = 0
            block.bn2.bias[:3] = torch.tensor([0.5, 1.0, 2.0])
    zeroed = tmp_path / "z.safetensors"
    ckpt.save(loaded.model, zeroed, loaded.header)
    diffs = {}
    for fold in ("exact-1x1", "reference"):
        r = run_cli("prune", zeroed, "--method", "zero-groups", "--threshold", "1e-6", "--fold", fold, "-o",
                    tmp_path / f"c{fold}.safetensors", "--json")
        assert r.exit_code == 0, r.output + repr(r.exception)
        res = json.loads(r.stdout)
        assert res["params_after"] < res["params_before"]
        diffs[fold] = res["max_output_diff"] / res["output_scale"]
    assert diffs["exact-1x1"] < 1e-5 < 1e-2 < diffs["reference"]


def _zeroed_resnet(path):
    """An untrained tv_resnet_tiny with two bottlenecks per stage, BN constants > 0 and zero filters:
    layer1.1.conv1 all zero (branch goes, block → identity), layer4.0.conv2 all zero (branch goes,
    downsample block: a zero stub), some filters of layer2.0.conv1 (3×3 consumer) and layer3.0.conv2
    (1×1 consumer)."""
    from prunecli.io.schema import ModelRef
    from prunecli.models import build_model

    torch.manual_seed(0)
    model, _, args = build_model("tv_resnet_tiny", blocks=2)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.bias.uniform_(0.1, 1.0)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
        model.layer1[1].conv1.weight.zero_()
        model.layer4[0].conv2.weight.zero_()
        model.layer2[0].conv1.weight[:3] = 0
        model.layer3[0].conv2.weight[:5] = 0
    header = ckpt.new_header(None, model=ModelRef(name="tv_resnet_tiny", kwargs=args), task="classification",
                             input_shape=[3, 32, 32], num_classes=10)
    ckpt.save(model.eval(), path, header)
    return model


def _reference_transcription(model):
    """What the reference's compressed ResNet computes (models_with_reduce_conv12.py): a removed
    filter contributes nothing after its BN (its constant is dropped), and a block whose conv1 or
    conv2 has no filter left computes ReLU(shortcut(x))."""
    import copy

    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        for block in (m for m in ref.modules() if hasattr(m, "conv3")):
            dead = False
            for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
                zero = conv.weight.flatten(1).norm(dim=1) < 1e-6
                bn.weight[zero], bn.bias[zero] = 0, 0
                dead |= bool(zero.all())
            if dead:
                block.bn3.weight.zero_()
                block.bn3.bias.zero_()
    return ref


def test_fold_reference_reproduces_the_reference_compression(tmp_path):
    original = _zeroed_resnet(tmp_path / "z.safetensors")
    res = {}
    for fold in ("reference", "exact-1x1"):
        r = run_cli("prune", tmp_path / "z.safetensors", "--method", "zero-groups", "--fold", fold,
                    "-o", tmp_path / f"{fold}.safetensors", "--json")
        assert r.exit_code == 0, r.output + repr(r.exception)
        res[fold] = json.loads(r.stdout)
    compact = ckpt.load(tmp_path / "reference.safetensors")
    assert compact.header.removed_modules == ["layer1.1"]  # the all-zero branch is gone, block → identity
    assert compact.model.layer4[0].conv1.out_channels == compact.model.layer4[0].conv2.out_channels == 1  # stub
    torch.manual_seed(1)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        want, got, before = _reference_transcription(original)(x), compact.model(x), original.eval()(x)
    assert torch.allclose(got, want, atol=1e-5)  # exactly the reference's compressed model
    assert (got - before).abs().max() > 0.05 * before.abs().max()  # dropped constants change the output
    assert res["reference"]["macs_after"] < res["exact-1x1"]["macs_after"] < res["reference"]["macs_before"]
    # ours keeps the constants: much closer to the searched model than the reference's compression
    assert res["exact-1x1"]["max_output_diff"] < 0.5 * res["reference"]["max_output_diff"]


def test_user_errors(searched, tmp_path, capsys):
    folder, _ = searched
    assert run_main("train", "--init", folder / "base.safetensors", "--data", SYNTH, "--mu", "0.1",
                    "-o", tmp_path / "x.safetensors") == 2
    assert "--optimizer proxsgd" in capsys.readouterr().err
    assert run_main("train", "--init", folder / "base.safetensors", "--data", SYNTH, "--optimizer", "proxsgd",
                    "--mu-scale", "layer2", "-o", tmp_path / "x.safetensors") == 2
    assert "GLOB=FACTOR" in capsys.readouterr().err
    assert run_main("prune", folder / "search.safetensors", "--method", "similarity", "--data", SYNTH, "-o",
                    tmp_path / "x.safetensors") == 2  # similarity's τ stays required
    assert "--threshold" in capsys.readouterr().err
    assert run_main("prune", folder / "search.safetensors", "--method", "zero-groups", "--fold", "sideways",
                    "-o", tmp_path / "x.safetensors") == 2
    assert "--fold" in capsys.readouterr().err
    assert run_main("prune", folder / "search.safetensors", "--method", "l1", "--ratio", "0.5", "--fold",
                    "reference", "-o", tmp_path / "x.safetensors") == 2
    assert "zero-groups" in capsys.readouterr().err


def test_default_search_is_the_reference(tmp_path, monkeypatch):
    """`train --optimizer proxsgd` with defaults: no snapping and no BN recalibration (the old default
    recalibrated on 50 batches after every epoch); both are recorded as options."""
    import prunecli.engine.fit as fit

    calls = []
    real = fit.recalibrate_bn
    monkeypatch.setattr(fit, "recalibrate_bn", lambda *a, **k: (calls.append(a[2]), real(*a, **k)))
    for extra, want in (((), []), (("--prox-snap", "--bn-recalibrate", "2"), [2])):
        calls.clear()
        out = tmp_path / f"s{len(extra)}.safetensors"
        r = run_cli("train", "--model", "tv_resnet_tiny", "--data", SYNTH, "--epochs", "1", "--optimizer", "proxsgd",
                    "--lr", "0.01", "--mu", "0.1", "--device", "cpu", *extra, "-o", out)
        assert r.exit_code == 0, r.output + repr(r.exception)
        options = ckpt.read_header(out.read_bytes()).lineage[-1].options
        assert calls == want
        assert options["prox_snap"] == bool(extra) and options["bn_recalibrate"] == (2 if extra else 0)


def test_fold_reference_leaves_basic_blocks_alone(tmp_path):
    """The reference removes branches of bottlenecks only. A basic block's conv2 writes into the
    residual stream (coupled across the stage): an all-zero conv2 must not cut the stream's channels."""
    from prunecli.io.schema import ModelRef
    from prunecli.models import build_model

    model, _, args = build_model("resnet_tiny")
    with torch.no_grad():
        model.layer1[0].conv2.weight.zero_()
    header = ckpt.new_header(None, model=ModelRef(name="resnet_tiny", kwargs=args), task="classification",
                             input_shape=[3, 32, 32], num_classes=10)
    ckpt.save(model.eval(), tmp_path / "z.safetensors", header)
    r = run_cli("prune", tmp_path / "z.safetensors", "--method", "zero-groups", "-o", tmp_path / "c.safetensors")
    assert r.exit_code == 0, r.output + repr(r.exception)
    compact = ckpt.load(tmp_path / "c.safetensors")
    assert compact.model.layer1[0].conv2.out_channels == model.layer1[0].conv2.out_channels
    assert not compact.header.removed_modules
