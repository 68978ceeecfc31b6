"""Gradient importance without gradients is refused, not used (timm MLP-Mixer at random init: its
classifier starts at zero, so every gradient is zero and Taylor scores, normalised by their mean, are
NaN). Before, global pruning silently removed nothing and local pruning removed arbitrary channels.
A group no gradient reached while others did (a zero-initialised residual BN) scores 0, with a warning."""

from __future__ import annotations

import pytest

from prunecli.errors import UserError
from tests.conftest import run_cli

DATA = "synthetic:n=8,val=4,classes=4"


@pytest.mark.parametrize("extra", [[], ["--global"]])
def test_taylor_on_zero_gradients_is_refused(tmp_path, extra):
    base, out = tmp_path / "m.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", "mixer_tiny_test", "--data", DATA, "--epochs", "0", "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "taylor", "--ratio", "0.3", "--calib-data", DATA, "--calib-batches", "1",
                "--batch-size", "4", "-o", out, *extra)
    assert isinstance(r.exception, UserError), repr(r.exception)
    assert "no gradient reached any prunable layer" in str(r.exception) and "--importance l1" in str(r.exception)
    assert not out.exists()
    r = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    assert r.exit_code == 0 and out.exists()


def test_a_group_without_gradient_scores_zero_and_is_said(tmp_path, capsys):
    """TinyViT's MBConv ends in a BatchNorm initialised at zero: its inner convs get no gradient at
    random init. Their Taylor scores (0/0 after Torch-Pruning's mean normaliser) count as 0."""
    from tests.conftest import run_main

    base, out = tmp_path / "t.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", "tiny_vit_tiny_test", "--data", DATA, "--epochs", "0", "-o", base).exit_code == 0
    code = run_main("prune", base, "--method", "taylor", "--ratio", "0.3", "--global", "--calib-data", DATA,
                    "--calib-batches", "2", "--batch-size", "4", "-o", out)
    err = capsys.readouterr().err
    assert code == 0 and out.exists(), err
    assert "got no gradient" in err
