"""`prune --method similarity` on the Keras models of Li et al. 2023, with the reference's graphs.

Reference (`utils/processing.py::get_filters_selection_layer`, spec §1.3): a ResNet gets graphs for
the stem, the first conv of every block and the two projection convs; the residual channels of
stage 1 follow the stem's graph, those of stages 2 and 3 the projection conv's. DenseNet-40: every
conv by its own graph.
"""

from __future__ import annotations

import json

import torch

from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import FlopsSidecar, MasksSidecar
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli


def _train_and_prune(model: str, tmp_path, threshold: str):
    base, out = tmp_path / "base.safetensors", tmp_path / "p.safetensors"
    r = run_cli("train", "--model", model, "--data", SYNTH, "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                "--optimizer", "adam", "--lr", "1e-3", "--weight-decay", "1e-4", "--weight-decay-mode", "keras",
                "-o", base)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert ckpt.load(base).header.lineage[-1].options["weight_decay_mode"] == "keras"
    r = run_cli("prune", base, "--method", "similarity", "--threshold", threshold, "--data", SYNTH,
                "--samples", "8", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    masks = MasksSidecar.model_validate_json((tmp_path / "p.masks.json").read_text())
    return base, out, json.loads(r.stdout), {layer.name: layer for layer in masks.layers}


def test_resnet_keras_graphs_and_residual_masks(tmp_path):
    base, out, result, layers = _train_and_prune("resnet_keras_tiny", tmp_path, "0.5")
    assert result["macs_after"] < result["macs_before"]
    deciders = {layer.details["decided_by"] for layer in layers.values() if layer.details}
    assert deciders <= {"conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.shortcut", "layer3.0.conv1",
                        "layer3.0.shortcut"}
    assert {"conv1", "layer2.0.shortcut", "layer3.0.shortcut"} <= deciders
    # the residual mask of stage s comes from its stem/projection graph, on every block's second conv
    for stage, decider in (("1", "conv1"), ("2", "layer2.0.shortcut"), ("3", "layer3.0.shortcut")):
        second = layers[f"layer{stage}.0.conv2"]
        assert second.details["decided_by"] == decider and second.removed == layers[decider].removed
    assert layers["layer2.0.conv2"].removed  # τ=0.5 on a 1-epoch model merges some residual channels
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)
    flops = FlopsSidecar.model_validate_json((tmp_path / "p.flops.json").read_text())
    assert flops.after.macs_conv_dense < flops.before.macs_conv_dense < flops.before.macs
    prof = run_cli("profile", out, "--compare", base, "--runs", "1", "--warmup", "0", "--batch-sizes", "1",
                   "--device", "cpu", "--json")
    assert prof.exit_code == 0, prof.output
    p = json.loads(prof.stdout)
    assert p["macs_conv_dense"] == flops.after.macs_conv_dense
    assert p["compare"]["params_conv_dense"] == flops.before.params_conv_dense


def test_densenet_keras_every_conv_by_its_own_graph(tmp_path):
    _, out, result, layers = _train_and_prune("densenet_keras_tiny", tmp_path, "0.5")
    assert result["macs_after"] < result["macs_before"]
    convs = [n for n, m in ckpt.load(out).model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9
    for layer in layers.values():
        if layer.kind == "Conv2d" and layer.details:
            assert layer.details["decided_by"] == layer.name
    assert ckpt.load(out).model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)
