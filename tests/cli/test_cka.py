"""`analyze --method cka` through the CLI on tiny checkpoints: self, --compare, --layers, --plot, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, run_cli, run_main

LAYERS = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer2.0.shortcut.0",
          "layer3.0.conv1", "layer3.0.conv2", "layer3.0.shortcut.0", "fc"]


def _analyze(ckpt_path, out, *args):
    r = run_cli("analyze", ckpt_path, "--method", "cka", "--data", SYNTH, "--batch-size", "16",
                "--device", "cpu", "-o", out, *args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r, json.loads(out.read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cka")


@pytest.fixture(scope="module")
def self_report(tiny_ckpt, work):
    return _analyze(tiny_ckpt, work / "self.json", "--plot", work / "self.png")


@pytest.fixture(scope="module")
def pruned(tiny_ckpt, work):
    out = work / "pruned.safetensors"
    r = run_cli("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def test_self_mode_square_unit_diagonal(tiny_ckpt, self_report, work):
    r, rep = self_report
    assert rep["method"] == "cka" and rep["sha256"] == ckpt.sha256(tiny_ckpt.read_bytes())
    assert rep["layers_a"] == rep["layers_b"] == LAYERS  # every Conv2d/Linear, named_modules order
    m = torch.tensor(rep["matrix"], dtype=torch.float64)
    assert m.shape == (10, 10) and torch.allclose(m, m.T, atol=2e-6)
    assert torch.allclose(m.diagonal(), torch.ones(10, dtype=torch.float64), atol=1e-6)
    assert rep["diagonal_mean"] == pytest.approx(1, abs=1e-9) and rep["compare"] is None
    assert (rep["batches"], rep["samples"]) == (3, 48)  # val=48 in batches of 16
    assert rep["options"] == {"data": SYNTH, "compare": None, "layers": [], "batch_size": 16, "max_batches": None,
                              "device": "cpu", "plot": str(work / "self.png"), "cka_modules": "layers"}
    assert "diagonal mean" in r.stdout and "10 × 10" in r.stdout
    assert (work / "self.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_with_a_copy_equals_self_mode(tiny_ckpt, self_report, work):
    copy = work / "copy.safetensors"
    shutil.copy(tiny_ckpt, copy)
    _, rep = _analyze(tiny_ckpt, work / "copy.json", "--compare", copy)
    assert rep["compare"] == {"path": str(copy), "sha256": ckpt.sha256(copy.read_bytes())}
    ours, self_mode = (torch.tensor(r["matrix"], dtype=torch.float64) for r in (rep, self_report[1]))
    assert torch.allclose(ours, self_mode, atol=2e-6)  # the two-model path agrees with self mode


def test_compare_with_a_pruned_copy(tiny_ckpt, pruned, work):
    r, rep = _analyze(tiny_ckpt, work / "pruned.json", "--compare", pruned, "--plot", work / "pruned.png")
    assert rep["layers_a"] == rep["layers_b"] == LAYERS  # channels change, names do not
    m = torch.tensor(rep["matrix"], dtype=torch.float64)
    assert m.shape == (10, 10) and m.abs().max() <= 1 + 1e-6
    assert not torch.allclose(m, m.T, atol=1e-3)  # A against B is not symmetric
    assert float(m[0, 0]) > 0.8  # the stem conv loses 30% of its filters but keeps most of its geometry
    assert 0 < rep["diagonal_mean"] < 1 and rep["diagonal_mean"] == pytest.approx(float(m.diagonal().mean()), abs=1e-6)
    assert "least similar layer" in r.stdout and "pruned.safetensors" in r.stdout
    assert (work / "pruned.png").read_bytes()[:4] == b"\x89PNG"


def test_layers_patterns_apply_to_each_model(tiny_ckpt, pruned, work):
    _, rep = _analyze(tiny_ckpt, work / "layers.json", "--compare", pruned, "--layers", "layer3.*",
                      "--layers", "conv1", "--max-batches", "2")
    names = ["conv1", "layer3.0", "layer3.0.conv1", "layer3.0.bn1", "layer3.0.conv2", "layer3.0.bn2",
             "layer3.0.shortcut", "layer3.0.shortcut.0", "layer3.0.shortcut.1"]  # any module, named_modules order
    assert rep["layers_a"] == rep["layers_b"] == names
    assert len(rep["matrix"]) == len(rep["layers_a"]) and rep["batches"] == 2 and rep["samples"] == 32
    assert rep["options"]["layers"] == ["layer3.*", "conv1"]


def _untrained(model: str, data: str, out):
    r = run_cli("train", "--model", model, "--data", data, "--epochs", "0", "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def test_two_architectures_give_a_rectangular_matrix(tiny_ckpt, work):
    vgg = _untrained("vgg_tiny", SYNTH, work / "vgg.safetensors")
    _, rep = _analyze(tiny_ckpt, work / "rect.json", "--compare", vgg, "--plot", work / "rect.png")
    assert rep["layers_a"] == LAYERS and rep["layers_b"][0] == "features.0" and rep["layers_b"][-1].startswith("classifier")
    m = torch.tensor(rep["matrix"], dtype=torch.float64)
    assert m.shape == (10, len(rep["layers_b"])) and len(rep["layers_b"]) != 10
    assert m.abs().max() <= 1 + 1e-6 and rep["diagonal_mean"] is None
    assert float(m[0, 0]) > 0.5  # both stems are 3×3 convs of the same images
    assert (work / "rect.png").read_bytes()[:4] == b"\x89PNG"


def test_a_final_batch_under_four_is_dropped(tiny_ckpt, work, capsys):
    out = work / "drop.json"
    code = run_main("analyze", tiny_ckpt, "--method", "cka", "--data", SYNTH, "--batch-size", "15", "--device", "cpu",
                    "--layers", "layer2.*conv*", "-o", out, "--json")
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["layers_a"] == ["layer2.0.conv1", "layer2.0.conv2"] and len(rep["matrix"]) == 2
    assert (rep["batches"], rep["samples"], rep["dropped_samples"]) == (3, 45, 3)  # 48 = 3·15 + 3
    assert "dropped a final batch of 3 examples" in capsys.readouterr().err


def test_compare_with_another_input_shape_is_refused(tiny_ckpt, work, capsys):
    small = _untrained("resnet_tiny", "synthetic:n=16,val=8,classes=4,size=16", work / "small.safetensors")
    code = run_main("analyze", tiny_ckpt, "--method", "cka", "--data", SYNTH, "--compare", small, "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "input shape [3, 16, 16] differs" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args, message", [
    (["--layers", "nothing.*"], "matches no module"),
    (["--compare", "missing.safetensors"], "checkpoint not found"),
    (["--batch-size", "3"], "at least 4"),
    (["--plot", "/nonexistent-dir/cka.png"], "folder does not exist"),
    (["--no-data"], "--data"),
])
def test_errors_are_one_line_exit_2(tiny_ckpt, capsys, args, message):
    data = [] if "--no-data" in args else ["--data", SYNTH]
    args = [a for a in args if a != "--no-data"]
    code = run_main("analyze", tiny_ckpt, "--method", "cka", *data, "--device", "cpu", *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
