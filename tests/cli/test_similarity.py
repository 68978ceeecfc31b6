"""`analyze --method similarity` and `prune --method similarity` through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import MasksSidecar
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli, run_main


@pytest.fixture(scope="module")
def report(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "sim.json"
    r = run_cli("analyze", tiny_ckpt, "--method", "similarity", "--data", SYNTH, "--samples", "16",
                "--thresholds", "0.5,0.7,0.9", "--device", "cpu", "-o", out, "--plot", out.with_suffix(".png"))
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out, json.loads(out.read_text())


def test_report_sweeps_thresholds(report, tiny_ckpt):
    path, rep = report
    assert rep["method"] == "similarity" and rep["sha256"] == ckpt.sha256(tiny_ckpt.read_bytes())
    assert [s["threshold"] for s in rep["sweep"]] == [0.5, 0.7, 0.9]
    assert rep["layers"][0]["name"] == "conv1"
    for layer in rep["layers"]:
        kept = [p["kept"] for p in layer["sweep"]]
        assert kept == sorted(kept) and 1 <= kept[0] and kept[-1] <= layer["filters"]
        sim = torch.tensor(layer["matrix"])
        assert torch.allclose(sim, sim.T) and torch.allclose(sim.diagonal(), torch.ones(layer["filters"]))
        assert sum(layer["sweep"][0]["degree_histogram"]) == layer["filters"]
    macs = [s["macs"] for s in rep["sweep"]]
    assert macs == sorted(macs) and macs[0] < rep["macs"]
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_prune_with_reuse_equals_fresh_feature_maps(report, tiny_ckpt, tmp_path):
    path, rep = report
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    r1 = run_cli("prune", tiny_ckpt, "--method", "similarity", "--threshold", "0.7", "--reuse", path, "-o", a, "--json")
    r2 = run_cli("prune", tiny_ckpt, "--method", "similarity", "--threshold", "0.7", "--data", SYNTH,
                 "--samples", "16", "-o", b, "--json")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    ma = MasksSidecar.model_validate_json((tmp_path / "a.masks.json").read_text())
    mb = MasksSidecar.model_validate_json((tmp_path / "b.masks.json").read_text())
    assert [layer.kept for layer in ma.layers] == [layer.kept for layer in mb.layers]
    result = json.loads(r1.stdout)
    assert result["macs_after"] == rep["sweep"][1]["macs"]  # what the analysis predicted for τ=0.7
    conv1 = next(layer for layer in ma.layers if layer.name == "conv1")
    assert conv1.details["graph_nodes"] == 8 and len(conv1.details["kept_degree"]) == len(conv1.kept)
    prof = run_cli("profile", a, "--runs", "1", "--warmup", "0", "--batch-sizes", "1", "--device", "cpu", "--json")
    assert json.loads(prof.stdout)["macs"] == result["macs_after"]
    here, fresh = reload_in_fresh_process(a, tmp_path)
    assert torch.equal(here, fresh)


@pytest.mark.parametrize("model", ["vgg_tiny", "densenet_tiny"])
def test_vgg_and_densenet(model, tmp_path):
    base, out = tmp_path / "base.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", model, "--data", SYNTH, "--epochs", "1", "--device", "cpu",
                   "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "similarity", "--threshold", "0.6", "--data", SYNTH, "--samples", "8",
                "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    result = json.loads(r.stdout)
    assert result["macs_after"] < result["macs_before"]
    loaded = ckpt.load(out).model
    assert loaded(torch.randn(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize("args,needle", [
    (["--ratio", "0.5", "--threshold", "0.8", "--data", SYNTH], "sets no ratio"),
    (["--data", SYNTH], "needs --threshold"),
    (["--threshold", "1.5", "--data", SYNTH], "needs --threshold"),
    (["--threshold", "0.8"], "needs --data"),
])
def test_bad_similarity_options(args, needle, tiny_ckpt, tmp_path, capsys):
    code = run_main("prune", tiny_ckpt, "--method", "similarity", *args, "-o", tmp_path / "o.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()


def test_reuse_of_another_checkpoints_report_is_refused(report, tmp_path, capsys):
    path, _ = report
    other = tmp_path / "other.safetensors"
    assert run_cli("train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "0", "-o", other).exit_code == 0
    code = run_main("prune", other, "--method", "similarity", "--threshold", "0.7", "--reuse", path,
                    "-o", tmp_path / "o.safetensors")
    assert code == 2 and "another checkpoint" in capsys.readouterr().err
