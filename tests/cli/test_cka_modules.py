"""`analyze --method cka --cka-modules all`: torch_cka's default layer set (every named_modules()
entry), order (hook firing) and timing (outputs read after the forward), as the MTP report's VGG maps."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from prunecli.analysis.cka import select_layers
from prunecli.data import build_data
from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, run_cli, run_main


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckam") / "vgg.safetensors"
    r = run_cli("train", "--model", "tv_vgg_tiny", "--data", SYNTH, "--epochs", "1", "--batch-size", "32",
                "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def _cka(path, out, *args):
    r = run_cli("analyze", path, "--method", "cka", "--data", SYNTH, "--batch-size", "8", "--max-batches", "3",
                "--device", "cpu", "-o", out, *args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return json.loads(out.read_text())


def test_torchvision_vgg16_has_the_reports_42_modules():
    from torchvision.models import vgg16

    model = vgg16(num_classes=100)
    names = select_layers(model, (), "A", "all")
    assert len(names) == len(list(model.named_modules())) == 42 and names[0] == ""
    assert len(select_layers(model, (), "A")) == 16  # the default: 13 convs + 3 Linear


def torch_cka_transcription(model, batches) -> tuple[list[str], torch.Tensor]:
    """torch_cka.CKA(model, model) without layer lists, as its compare() computes (AntixK/PyTorch-Model-Compare):
    a hook on every named module stores `out` itself; per batch the features dict (first-firing order)
    gives K = XXᵀ with zero diagonal, HSIC₁ per pair, each divided by the batch count; CKA = hsic_kl/√(kk·ll)."""
    feats: dict[str, torch.Tensor] = {}

    def log(name, module, inputs, out):
        feats[name] = out

    handles = [m.register_forward_hook(partial(log, name)) for name, m in model.named_modules()]

    def hsic(k, l):  # noqa: E741
        n, ones = k.shape[0], torch.ones(k.shape[0], 1, dtype=k.dtype)
        value = torch.trace(k @ l) + (ones.T @ k @ ones @ ones.T @ l @ ones).item() / ((n - 1) * (n - 2))
        value -= (ones.T @ k @ l @ ones).item() * 2 / (n - 2)
        return (value / (n * (n - 3))).item()

    m = len(list(model.named_modules()))
    acc = torch.zeros(m, m, 3, dtype=torch.float64)
    with torch.no_grad():
        for x in batches:
            feats.clear()
            model(x)
            grams = []
            for out in feats.values():
                flat = out.flatten(1).double()
                grams.append((flat @ flat.T).fill_diagonal_(0))
            for i, k in enumerate(grams):
                for j, l in enumerate(grams):  # noqa: E741
                    acc[i, j] += torch.tensor([hsic(k, k), hsic(k, l), hsic(l, l)]) / len(batches)
    for h in handles:
        h.remove()
    return list(feats), acc[:, :, 1] / (acc[:, :, 0].sqrt() * acc[:, :, 2].sqrt())


def test_all_modules_equal_a_transcription_of_torch_cka(vgg, tmp_path):
    report = _cka(vgg, tmp_path / "all.json", "--cka-modules", "all")
    model = ckpt.load(vgg).model.eval()
    names = [n for n, _ in model.named_modules()]
    assert report["options"]["cka_modules"] == "all"
    assert len(report["layers_a"]) == len(names) == 27 and set(report["layers_a"]) == set(names)
    loader = build_data(SYNTH).loader("val", 8)
    batches = [x for i, (x, _) in enumerate(loader) if i < 3]
    ref_names, ref = torch_cka_transcription(model, batches)
    assert report["layers_a"] == ref_names  # hook-firing order: children, then their container, root last
    assert ref_names[-1] == "" and ref_names.index("features") == ref_names.index("features.15") + 1
    ours = torch.tensor(report["matrix"], dtype=torch.float64)
    assert torch.allclose(ours, ref, atol=1e-5)
    at = {n: i for i, n in enumerate(report["layers_a"])}
    # outputs read after the forward: a Linear followed by ReLU(inplace=True) shows its post-ReLU values,
    # and the root's output (the logits) is the last Linear's
    assert ours[at["classifier.0"], at["classifier.1"]] == pytest.approx(1.0, abs=1e-9)
    assert ours[at[""], at["classifier.6"]] == pytest.approx(1.0, abs=1e-9)
    layers = _cka(vgg, tmp_path / "layers.json")  # the default: Conv/Linear outputs as they leave the layer
    assert layers["options"]["cka_modules"] == "layers" and len(layers["layers_a"]) == 7
    lat = {n: i for i, n in enumerate(layers["layers_a"])}
    pre = layers["matrix"][lat["classifier.0"]][lat["classifier.3"]]
    assert abs(pre - report["matrix"][at["classifier.0"]][at["classifier.3"]]) > 1e-4


def test_all_modules_against_another_model(vgg, tmp_path):
    report = _cka(vgg, tmp_path / "cmp.json", "--cka-modules", "all", "--compare", vgg, "--plot", tmp_path / "c.png")
    assert len(report["layers_a"]) == len(report["layers_b"]) == 27
    assert report["diagonal_mean"] == pytest.approx(1.0, abs=1e-6)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [(["--cka-modules", "some"], "--cka-modules must be layers or all, got 'some'"),
                                          (["--cka-modules", "all", "--layers", "features.*"], "--layers")])
def test_bad_cka_modules_exit_2(vgg, tmp_path, capsys, args, message):
    code = run_main("analyze", vgg, "--method", "cka", "--data", SYNTH, "-o", str(tmp_path / "x.json"), *args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
