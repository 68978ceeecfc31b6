"""`prunecli analyze` through the real CLI on a tiny checkpoint: numbers checked against the weights,
against `prunecli evaluate`, and against a plain Torch-Pruning prune."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, run_cli, run_proc

RATIOS = (0.3, 0.7)


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def magnitude(tiny_ckpt):
    return json.loads(_ok(run_cli("analyze", tiny_ckpt, "--method", "magnitude")).stdout)


@pytest.fixture(scope="module")
def sensitivity(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze") / "sens.json"
    r = _ok(run_cli("analyze", tiny_ckpt, "--method", "sensitivity", "--data", SYNTH, "--ratios",
                    ",".join(map(str, RATIOS)), "--max-batches", "1", "--device", "cpu", "-o", out, "--json"))
    report = json.loads(out.read_text())
    assert json.loads(r.stdout) == report
    return report


def _prunable(weights: dict) -> dict:
    return {k[: -len(".weight")]: w for k, w in weights.items() if k.endswith(".weight") and w.ndim in (2, 4)}


def test_report_envelope(tiny_ckpt, magnitude, sensitivity):
    digest = ckpt.sha256(tiny_ckpt.read_bytes())
    for report, method in ((magnitude, "magnitude"), (sensitivity, "sensitivity")):
        assert report["format"] == "prunecli-analysis" and report["version"] == 1
        assert report["method"] == method and report["sha256"] == digest
        assert report["model"] == "resnet_tiny" and report["checkpoint"] == str(tiny_ckpt)
    assert sensitivity["options"]["ratios"] == list(RATIOS) and sensitivity["options"]["max_batches"] == 1


def test_magnitude_matches_the_weights(tiny_ckpt, magnitude):
    weights = _prunable(load_file(tiny_ckpt))
    layers = {r["name"]: r for r in magnitude["layers"]}
    assert set(layers) == set(weights)
    for name, w in weights.items():
        l1 = w.double().flatten(1).abs().sum(1)
        l2 = w.double().flatten(1).norm(dim=1)
        rec = layers[name]
        assert rec["filters"] == w.shape[0] and rec["protected"] == (name == "fc")
        assert rec["l1_sorted"] == pytest.approx(sorted(l1.tolist()), rel=1e-9)
        q = torch.quantile(l1, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
        expected = {"min": l1.min(), "max": l1.max(), "mean": l1.mean(), "std": l1.std(correction=0)}
        assert rec["l1"] == pytest.approx({**{k: float(v) for k, v in expected.items()},
                                           "q10": q[0], "q50": q[1], "q90": q[2]}, rel=1e-9)
        assert rec["l2"]["max"] == pytest.approx(float(l2.max()), rel=1e-9)
        assert rec["near_zero"] == int((l1 < 1e-6 * l1.max()).sum())


def test_magnitude_prints_a_table_with_a_file_output(tiny_ckpt, tmp_path):
    r = _ok(run_cli("analyze", tiny_ckpt, "--method", "magnitude", "-o", tmp_path / "m.json"))
    assert "layer3.0.conv2" in r.stdout and "protected" in r.stdout
    assert json.loads((tmp_path / "m.json").read_text())["method"] == "magnitude"


def test_sensitivity_one_entry_per_layer_and_ratio(tiny_ckpt, sensitivity):
    names = [n for n in _prunable(load_file(tiny_ckpt)) if n != "fc"]
    assert [r["name"] for r in sensitivity["layers"]] == names
    assert sensitivity["skipped"] == [{"name": "fc", "skipped": "protected"}]
    base = sensitivity["baseline"]
    for layer in sensitivity["layers"]:
        results = layer["results"]
        assert [r["ratio"] for r in results] == list(RATIOS)
        for r in results:
            assert 0 <= r["top1"] <= 100 and r["samples"] == base["samples"]
            assert r["drop"] == pytest.approx(base["top1"] - r["top1"])
        macs = [base["macs"]] + [r["macs"] for r in results]
        assert all(a > b for a, b in zip(macs[:-1], macs[1:], strict=True)), (layer["name"], macs)
    coupled = {r["name"]: r["coupled"] for r in sensitivity["layers"]}
    assert coupled["layer3.0.conv2"] == ["layer3.0.shortcut.0"]  # the residual add couples them


def test_sensitivity_baseline_equals_evaluate(tiny_ckpt, sensitivity):
    r = _ok(run_cli("evaluate", tiny_ckpt, "--data", SYNTH, "--device", "cpu", "--json"))
    ev = json.loads(r.stdout)
    base = sensitivity["baseline"]
    assert base["top1"] == pytest.approx(ev["top1"]) and base["samples"] == ev["samples"]
    assert base["loss"] == pytest.approx(ev["loss"], rel=1e-5)


def test_replay_prunes_like_torch_pruning(tiny_ckpt):
    """The one-graph replay used by the sweep equals a plain Torch-Pruning group prune on a copy."""
    import torch_pruning as tp

    from prunecli.analysis.sensitivity import replay

    model = ckpt.load(tiny_ckpt).model
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    graph = tp.DependencyGraph().build_dependency(model, x)
    ours = replay(model, graph.get_pruning_group(model.layer2[0].conv2, tp.prune_conv_out_channels, [0, 3, 5]))
    ref = copy.deepcopy(model)
    tp.DependencyGraph().build_dependency(ref, x).get_pruning_group(
        ref.layer2[0].conv2, tp.prune_conv_out_channels, [0, 3, 5]).prune()
    assert ours.layer2[0].shortcut[0].weight.shape[0] == 13
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    for key, value in before.items():  # the analysed model itself is left untouched
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("args, message", [
    (["--method", "sensitivity"], "--data"),
    (["--method", "sensitivity", "--data", SYNTH, "--ratios", "0.5,1.2"], "(0, 1)"),
    (["--method", "sensitivity", "--data", SYNTH, "--ratios", "0.5,x"], "not a number"),
    (["--method", "l1"], "structured method"),
    (["--method", "sensitivty"], "unknown method"),
])
def test_errors_are_one_line_exit_2(tiny_ckpt, args, message):
    r = run_proc("analyze", tiny_ckpt, *args)
    stderr = r.stderr.decode()
    assert r.returncode == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert r.stdout == b""
