"""`prunecli profile`: JSON fields, the flops sidecar, --compare ratios, and user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from prunecli.cli.app import app
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import FlopsSidecar, ModelRef
from prunecli.io.sidecars import sidecar_path
from prunecli.models import build_model
from prunecli.profiling.counts import count

SHAPE = [3, 32, 32]
FAST = ["--runs", "2", "--warmup", "1", "--batch-sizes", "1,4", "--device", "cpu", "--json"]


def _save(model, path, structure=None):
    header = ckpt.new_header(None, model=ModelRef(name="resnet_tiny", kwargs={"num_classes": 10}),
                             input_shape=SHAPE, num_classes=10, structure=structure or {})
    ckpt.save(model, path, header)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """An unpruned resnet_tiny and one with 4 output channels of layer1.0.conv1 removed."""
    import torch_pruning as tp

    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    base, _, _ = build_model("resnet_tiny")
    _save(base, root / "base.safetensors")
    pruned, _, _ = build_model("resnet_tiny")
    pruned.load_state_dict(base.state_dict())
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=torch.randn(1, *SHAPE))
    graph.get_pruning_group(pruned.layer1[0].conv1, tp.prune_conv_out_channels, idxs=[0, 1, 2, 3]).prune()
    fresh, _, _ = build_model("resnet_tiny")
    _save(pruned, root / "pruned.safetensors", ckpt.structure_diff(pruned, fresh))
    return root


def run(*args):
    result = CliRunner().invoke(app, ["profile", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_json_fields_and_counts(checkpoints):
    src = checkpoints / "pruned.safetensors"
    out = run(src, *FAST, "--per-layer")
    counted = count(ckpt.load(src).model, SHAPE)
    assert (out["macs"], out["params"]) == (counted.macs, counted.params)
    assert [row["batch"] for row in out["latency"]] == [1, 4]
    for row in out["latency"]:
        assert 0 < row["median_ms"] <= row["p90_ms"] and row["images_per_s"] > 0
    for mem in out["memory"]:
        assert mem["activations_bytes"] > 0
        assert mem["total_bytes"] == mem["weights_bytes"] + mem["input_bytes"] + mem["activations_bytes"]
    assert out["memory"][1]["activations_bytes"] > out["memory"][0]["activations_bytes"]
    assert {layer["name"]: layer["macs"] for layer in out["layers"]} == {
        name: layer.macs for name, layer in counted.layers.items()}
    assert out["settings"]["runs"] == 2 and out["settings"]["device"] == "cpu"
    assert "compare" not in out


def test_sidecar_counts_against_a_fresh_build_and_holds_latency(checkpoints):
    src = checkpoints / "pruned.safetensors"
    out = run(src, *FAST)
    path = sidecar_path(src, "flops.json")
    assert out["sidecar"] == str(path)
    doc = FlopsSidecar.model_validate_json(path.read_text())
    fresh = count(build_model("resnet_tiny")[0], SHAPE)
    assert doc.checkpoint == "pruned.safetensors"
    assert (doc.before.macs, doc.after.macs) == (fresh.macs, out["macs"])
    assert doc.before.macs > doc.after.macs and doc.ratio["macs"] > 1
    layer = next(row for row in doc.layers if row.name == "layer1.0.conv1")
    assert (layer.macs_before, layer.params_before, layer.params_after) == (589824, 576, 288)  # 8 → 4 output channels
    assert doc.latency["device"] == "cpu" and doc.latency["runs"] == 2
    assert [row["batch"] for row in doc.latency["batches"]] == [1, 4]


def test_compare_gives_ratios(checkpoints):
    base, pruned = checkpoints / "base.safetensors", checkpoints / "pruned.safetensors"
    same = run(base, "--compare", base, *FAST)
    assert same["ratios"]["macs"] == 1.0 and same["ratios"]["params"] == 1.0
    assert set(same["ratios"]["speedup"]) == {"1", "4"}
    assert same["compare"]["sidecar"] is None  # only CKPT's sidecar is written
    out = run(pruned, "--compare", base, *FAST)
    assert out["ratios"]["macs"] == pytest.approx(out["compare"]["macs"] / out["macs"]) and out["ratios"]["macs"] > 1
    assert out["ratios"]["params"] > 1


def test_table_output_and_stdin_writes_no_sidecar(checkpoints, tmp_path):
    src = tmp_path / "copy.safetensors"
    src.write_bytes((checkpoints / "base.safetensors").read_bytes())
    table = CliRunner().invoke(app, ["profile", str(src), "--runs", "1", "--warmup", "0", "--batch-sizes", "2"])
    assert table.exit_code == 0 and "latency b=2" in table.stdout and "MACs" in table.stdout
    assert "timing" in table.stderr and "timing" not in table.stdout
    piped = CliRunner().invoke(app, ["profile", "-", "--runs", "1", "--warmup", "0", "--batch-sizes", "1", "--json"],
                               input=src.read_bytes())
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["sidecar"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.flops.json", "copy.safetensors"]


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "1,x"], "--batch-sizes must be positive integers"),
    (["--batch-sizes", "0"], "--batch-sizes must be positive integers"),
    (["--runs", "0"], "--runs must be at least 1"),
])
def test_bad_values_are_one_line_errors(checkpoints, args, message):
    proc = subprocess.run([sys.executable, "-m", "prunecli", "profile", str(checkpoints / "base.safetensors"), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
