"""Latency-aware pruning (issue 16): per-layer latency, the lookup table's cache, --round-to auto,
HALP's knapsack, --target-latency. Synthetic timing tables where the logic is what is tested;
real timing only on tiny models with few runs."""

from __future__ import annotations

import json

from tests.conftest import run_cli, untrained


def test_profile_per_layer_latency(tmp_path):
    ckpt = untrained("resnet_tiny", tmp_path / "t.safetensors")
    r = run_cli("profile", ckpt, "--per-layer", "--latency", "--batch-sizes", "1,4", "--runs", "2", "--warmup", "1",
                "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = json.loads(r.stdout)
    assert out["layer_latency"]["batch_sizes"] == [1, 4] and out["layer_latency"]["dtype"] == "float32"
    convs = [row for row in out["layers"] if row["kind"] == "Conv2d"]
    assert len(convs) == 9 and all(set(row["latency_ms"]) == {"1", "4"} for row in convs)
    assert all(row["latency_ms"]["4"] > 0 and row["macs"] > 0 for row in convs)
    assert {"macs", "params", "name", "kind"} <= set(out["layers"][0])  # existing keys kept
    plain = json.loads(run_cli("profile", ckpt, "--per-layer", "--runs", "1", "--warmup", "0", "--batch-sizes", "1",
                               "--device", "cpu", "--json").stdout)
    assert "layer_latency" not in plain and "latency_ms" not in plain["layers"][0]
