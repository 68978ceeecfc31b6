"""`prunecli doctor` (issue 14 item 5, named by issue 12's refusals): a pre-flight check, nothing written."""

from __future__ import annotations

import json

import pytest

from prunecli.errors import UserError
from tests.conftest import run_cli


def _doctor(*args: str):
    r = run_cli("doctor", *args, "--json")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, json.loads(r.stdout)


def test_a_prunable_model_passes_every_check(tmp_path):
    code, report = _doctor("resnet20")
    assert code == 0 and report["ok"]
    assert [c["check"] for c in report["checks"]] == ["forward", "extensions", "dependency graph", "probe pruning"]
    assert all(c["ok"] for c in report["checks"])
    # ResNet-20: 9 blocks' inner convs + one group per stage width (stem and shortcuts couple the residuals)
    assert len(report["groups"]) == 12 and report["protected"] == ["fc"]
    probe = report["probe"]
    assert probe["macs_after"] < 0.6 * probe["macs_before"] and probe["checkpoint_bytes"] > 0
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_is_diagnosed_too(tmp_path):
    base = tmp_path / "b.safetensors"
    r = run_cli("train", "--model", "vit_tiny_test", "--data", "synthetic:n=8,val=4", "--epochs", "0", "-o", base)
    assert r.exit_code == 0, r.output
    code, report = _doctor(str(base))
    assert code == 0 and report["model"] == "vit_tiny_test"
    heads = {h["layer"]: h["heads"] for h in report["heads"]}
    assert heads == {"blocks.0.attn.qkv": 4, "blocks.1.attn.qkv": 4}
    bare = {u["name"]: u for u in report["unwrapped"]}
    assert bare["pos_embed"]["dim"] == 2 and "guess" in bare["pos_embed"]["pruning"]


def test_a_refused_layer_fails_with_the_globs_that_lift_it():
    code, report = _doctor("edgenext_tiny_test")  # CAFormer's attention prunes now (timm_attention_width)
    assert code == 1 and not report["ok"]
    failed = report["checks"][-1]
    assert failed["check"] == "extensions" and not failed["ok"]
    assert "--ignore '*.xca'" in failed["detail"]
    code, report = _doctor("edgenext_tiny_test", "--ignore", "*.xca")
    assert code == 0 and report["probe"]["macs_after"] < report["probe"]["macs_before"]


def test_everything_protected_means_no_mac_change():
    code, report = _doctor("resnet20", "--ignore", "*conv*", "--ignore", "*shortcut*")
    assert code == 1
    assert not report["checks"][-1]["ok"] or not report["checks"][-2]["ok"]


def test_the_time_limit_is_a_diagnosis_not_a_hang():
    code, report = _doctor("resnet20", "--timeout", "0.000001")
    assert code == 1 and report["checks"][-1]["check"] == "time limit"
    assert "took longer than --timeout" in report["checks"][-1]["detail"]


@pytest.mark.parametrize("target", ["no_such_model", "missing.safetensors"])
def test_a_bad_target_is_a_user_error(target):
    r = run_cli("doctor", target)
    assert isinstance(r.exception, UserError)


def test_a_prune_refusal_points_at_doctor(tmp_path):
    base = tmp_path / "c.safetensors"
    assert run_cli("train", "--model", "edgenext_tiny_test", "--data", "synthetic:n=8,val=4", "--epochs", "0",
                   "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", "-o", tmp_path / "p.safetensors")
    assert isinstance(r.exception, UserError) and "--ignore" in str(r.exception)
    assert r.exception.hint.startswith(f"`prunecli doctor {base}`")
    assert not (tmp_path / "p.safetensors").exists()
