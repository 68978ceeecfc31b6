"""GSparsity end to end: ProxSGD search (`train --optimizer proxsgd`), zero-group removal into a
dense model (`prune --method zero-groups`), retraining; on CIFAR ResNet-20 and a tiny torchvision ResNet."""

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
                "-o", search, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return folder, json.loads(r.stdout)


def test_search_reports_zero_groups_and_compressed_macs(searched):
    folder, metrics = searched
    assert 0 < metrics["zero_groups"] < 1
    header = ckpt.read_header((folder / "search.safetensors").read_bytes())
    assert header.metrics["zero_groups"] == metrics["zero_groups"]
    assert header.lineage[-1].options["optimizer"] == "proxsgd" and header.lineage[-1].options["mu"] == 0.3
    assert metrics["macs_ratio"] > 1


def test_compact_model_is_smaller_and_as_accurate(searched):
    folder, metrics = searched
    compact = folder / "compact.safetensors"
    r = run_cli("prune", folder / "search.safetensors", "--method", "zero-groups", "--threshold", "1e-6",
                "-o", compact, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert res["macs_after"] == metrics["macs_compressed"] < res["macs_before"]
    assert res["max_output_diff"] < 0.05 * res["output_scale"]  # folded; only 3×3 borders differ
    tops = []
    for path in (folder / "search.safetensors", compact):
        r = run_cli("evaluate", path, "--data", DATA, "--device", "cpu", "--json")
        tops.append(json.loads(r.stdout)["top1"])
    assert tops[0] == tops[1] and tops[0] > 20  # above chance (10%): equal accuracy is a real check
    masks = json.loads((folder / "compact.masks.json").read_text())
    assert masks["method"] == "zero-groups" and masks["layers"]
    search = ckpt.load(folder / "search.safetensors").model
    named = dict(search.named_modules())
    for layer in masks["layers"]:  # only filters that really were zero went
        norms = named[layer["name"]].weight.detach()[layer["removed"]].flatten(1).norm(dim=1)
        assert bool((norms < 1e-6).all())
    here, fresh = reload_in_fresh_process(compact, folder)
    assert torch.equal(here, fresh)


def test_folding_keeps_a_1x1_consumer_exact(tmp_path, monkeypatch):
    """Zero filters of bottleneck conv2 feed a 1×1 conv3 through BN (β > 0) and ReLU: with the
    constant folded into bn3's running mean the compact model computes the same; without it, not."""
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
    for fold in (True, False):
        if not fold:
            import prunecli.methods.zero_groups as zg

            monkeypatch.setattr(zg, "fold_constants", lambda *a: [])
        r = run_cli("prune", zeroed, "--method", "zero-groups", "--threshold", "1e-6", "-o",
                    tmp_path / f"c{fold}.safetensors", "--json")
        assert r.exit_code == 0, r.output + repr(r.exception)
        res = json.loads(r.stdout)
        assert res["params_after"] < res["params_before"]
        diffs[fold] = res["max_output_diff"] / res["output_scale"]
    assert diffs[True] < 1e-5 < 1e-2 < diffs[False]


def test_user_errors(searched, tmp_path, capsys):
    folder, _ = searched
    assert run_main("train", "--init", folder / "base.safetensors", "--data", SYNTH, "--mu", "0.1",
                    "-o", tmp_path / "x.safetensors") == 2
    assert "--optimizer proxsgd" in capsys.readouterr().err
    assert run_main("train", "--init", folder / "base.safetensors", "--data", SYNTH, "--optimizer", "proxsgd",
                    "--mu-scale", "layer2", "-o", tmp_path / "x.safetensors") == 2
    assert "GLOB=FACTOR" in capsys.readouterr().err
    assert run_main("prune", folder / "search.safetensors", "--method", "zero-groups", "-o",
                    tmp_path / "x.safetensors") == 2
    assert "--threshold" in capsys.readouterr().err
