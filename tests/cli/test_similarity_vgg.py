"""Similarity pruning on VGG (Li et al. PRL 2023): the hidden FC follows the last conv (`tied`),
the paper's Keras VGG-16 (`vgg16_keras`), and `--selection` through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import MasksSidecar
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli, run_main


def _slice_bn(bn, kept):
    new = type(bn)(len(kept), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).data.copy_(getattr(bn, name).data[kept])
    return new


def hand_sliced(model, masks: MasksSidecar, fc: str = "classifier.linear1"):
    """The base VGG with each conv's kept filters (and FC-hidden's kept units) cut out by hand,
    layer by layer, without Torch-Pruning: what the pruned model must compute."""
    kept = {layer.name: layer.kept for layer in masks.layers}
    prev = [0, 1, 2]
    for i, m in enumerate(model.features):
        if isinstance(m, nn.Conv2d):
            out = kept.get(f"features.{i}", list(range(m.out_channels)))
            conv = nn.Conv2d(len(prev), len(out), 3, 1, 1, bias=m.bias is not None)
            conv.weight.data = m.weight.data[out][:, prev].clone()
            if m.bias is not None:
                conv.bias.data = m.bias.data[out].clone()
            model.features[i], prev = conv, out
        elif isinstance(m, nn.BatchNorm2d):
            model.features[i] = _slice_bn(m, prev)
    c = model.classifier
    hidden = kept.get(fc, list(range(c.linear1.out_features)))
    lin1 = nn.Linear(len(prev), len(hidden))
    lin1.weight.data, lin1.bias.data = c.linear1.weight.data[hidden][:, prev].clone(), c.linear1.bias.data[hidden]
    lin2 = nn.Linear(len(hidden), c.linear2.out_features)
    lin2.weight.data, lin2.bias.data = c.linear2.weight.data[:, hidden].clone(), c.linear2.bias.data.clone()
    c.linear1, c.norm1, c.linear2 = lin1, _slice_bn(c.norm1, hidden), lin2
    return model


@pytest.mark.parametrize("model,last", [("vgg_tiny", "features.19"), ("vgg_keras_tiny", "features.24")])
def test_hidden_fc_follows_the_last_conv(model, last, tmp_path):
    base, out = tmp_path / "base.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", model, "--data", SYNTH, "--epochs", "1", "--device", "cpu",
                   "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "similarity", "--threshold", "0.6", "--data", SYNTH, "--samples", "8",
                "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    masks = MasksSidecar.model_validate_json((tmp_path / "p.masks.json").read_text())
    layers = {layer.name: layer for layer in masks.layers}
    conv, fc = layers[last], layers["classifier.linear1"]
    assert 0 < len(conv.removed) < conv.channels_before  # the last conv did lose filters
    assert fc.kept == conv.kept and fc.channels_before == conv.channels_before
    assert fc.details["tied_to"] == last and masks.options["selection"] == "reference"
    pruned = ckpt.load(out).model.eval()
    assert pruned.classifier.linear1.out_features == len(conv.kept)
    assert pruned.classifier.norm1.num_features == len(conv.kept)
    sliced = hand_sliced(ckpt.load(base).model, masks).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(pruned(x), sliced(x), atol=1e-5)
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_selection_is_an_option_and_is_recorded(tiny_ckpt, tmp_path):
    out = tmp_path / "s.safetensors"
    r = run_cli("prune", tiny_ckpt, "--method", "similarity", "--threshold", "0.7", "--data", SYNTH,
                "--samples", "16", "--selection", "strength", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    masks = MasksSidecar.model_validate_json((tmp_path / "s.masks.json").read_text())
    assert masks.options["selection"] == "strength"
    assert {layer.details["selection"] for layer in masks.layers if "selection" in layer.details} == {"strength"}
    rep = tmp_path / "a.json"
    r = run_cli("analyze", tiny_ckpt, "--method", "similarity", "--data", SYNTH, "--samples", "16",
                "--thresholds", "0.7", "--selection", "strength", "--device", "cpu", "-o", rep)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert json.loads(rep.read_text())["options"]["selection"] == "strength"


@pytest.mark.parametrize("command", ["prune", "analyze"])
def test_unknown_selection_is_a_user_error(command, tiny_ckpt, tmp_path, capsys):
    extra = ["--threshold", "0.7"] if command == "prune" else []
    code = run_main(command, tiny_ckpt, "--method", "similarity", "--data", SYNTH, *extra,
                    "--selection", "degree", "-o", tmp_path / "o.json")
    err = capsys.readouterr().err
    assert code == 2 and "--selection must be reference or strength" in err and "Traceback" not in err
