"""MBDL as the paper ran it (issue 15 items 1, 2, 4, 7): a held-out test split, test-time adaptation
that never reads the test ground truth, the DEQ's training tolerance, the combined strategies."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import run_cli

DATA = "phantom:n=8,val=2,test=3,size=16,coils=2"
FT = ["--epochs", "2", "--batch-size", "4", "--device", "cpu", "--optimizer", "adam", "--lr", "1e-3"]


def _ok(*args):
    r = run_cli(*args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return (json.loads(r.stdout) if "--json" in args else None), r.stderr


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("protocol") / "base.safetensors"
    _, err = _ok("train", "--model", "deq-edsr-tiny", "--data", DATA, "--epochs", "2", "--batch-size", "4",
                 "--optimizer", "adam", "--lr", "1e-3", "--device", "cpu", "-o", path)
    assert "data: phantom:n=8,val=2,test=3,size=16,coils=2 — train 8, val 2, test 3 slices" in err
    return path


@pytest.fixture(scope="module")
def pruned(base):
    path = base.parent / "pruned.safetensors"
    _ok("prune", base, "--method", "l1", "--ratio", "0.4", "-o", path)
    return path


def test_evaluate_on_the_test_split_says_its_sizes(base):
    test, err = _ok("evaluate", base, "--data", DATA, "--split", "test", "--device", "cpu", "--json")
    val, _ = _ok("evaluate", base, "--data", DATA, "--split", "val", "--device", "cpu", "--json")
    assert test["split"] == "test" and test["samples"] == 3 and val["samples"] == 2
    assert test["split_sizes"] == test["split_volumes"] == {"train": 8, "val": 2, "test": 3}
    assert test["psnr"] != val["psnr"]  # other slices
    assert "(volumes: train 8, val 2, test 3)" in err


def _weights(path):
    return ckpt.load(path).model.state_dict()


def _nan_test_targets(monkeypatch):
    """The test split's ground truth replaced by NaN: any use of it would poison the run."""
    import prunecli.data.mri as mri

    real = mri.simulate_phantoms

    def simulate(opts, split, mask):
        x, target = real(opts, split, mask)
        return x, (torch.full_like(target, float("nan")) if split == "test" else target)

    monkeypatch.setattr(mri, "simulate_phantoms", simulate)


@pytest.mark.parametrize("strategy", ["distill", "selfsup", "testdc+distill"])
def test_adapting_on_test_never_reads_its_ground_truth(base, pruned, tmp_path, monkeypatch, strategy):
    teacher = [] if strategy == "selfsup" else ["--teacher", base]
    args = ["finetune", pruned, "--data", DATA, "--strategy", strategy, *teacher, *FT, "--select", "val_dc",
            "--adapt-on", "test", "--json"]
    real, _ = _ok(*args, "-o", tmp_path / "real.safetensors")
    _ok("finetune", pruned, "--data", DATA, "--strategy", strategy, *teacher, *FT, "--select", "val_dc",
        "-o", tmp_path / "train.safetensors")
    with monkeypatch.context() as m:
        _nan_test_targets(m)
        hidden, _ = _ok(*args, "-o", tmp_path / "nan.safetensors")
    assert hidden == {**real, "output": str(tmp_path / "nan.safetensors"), "images_per_s": hidden["images_per_s"]}
    a, b = _weights(tmp_path / "real.safetensors"), _weights(tmp_path / "nan.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical with NaN ground truth
    other = _weights(tmp_path / "train.safetensors")
    assert any(not torch.equal(a[k], other[k]) for k in a)  # it did train on other data than --adapt-on train
    header = ckpt.read_header((tmp_path / "real.safetensors").read_bytes())
    assert header.lineage[-1].options["adapt_on"] == "test" and header.lineage[-1].options["strategy"] == strategy


def test_supervised_plus_distill_runs_through_the_cli(base, pruned, tmp_path):
    res, _ = _ok("finetune", pruned, "--data", DATA, "--strategy", "supervised+distill", "--teacher", base, *FT,
                 "--json", "-o", tmp_path / "sd.safetensors")
    assert res["train_loss"] == res["train_loss"] and "val_psnr" in res  # supervised: validated against GT


def test_training_tolerance_is_recorded_saved_and_changes_the_solve(base, tmp_path):
    out = tmp_path / "tol.safetensors"
    _, err = _ok("finetune", base, "--data", DATA, "--tol", "4e-3", *FT, "-o", out)
    assert "solver tolerance 0.004 (was 0.0001)" in err
    header = ckpt.read_header(out.read_bytes())
    assert header.model.kwargs["tol"] == 4e-3 and header.lineage[-1].options["tol"] == 4e-3
    assert ckpt.read_header(base.read_bytes()).lineage[-1].options["tol"] is None  # not given: the model's own
    loose, strict = ckpt.load(out).model, ckpt.load(base).model
    assert loose.tol == 4e-3 and strict.tol == 1e-4
    from prunecli.data import build_data

    x, _ = next(iter(build_data(DATA).loader("test", 3)))
    with torch.no_grad():
        loose(x), strict(x)
    assert loose.last_residual < 4e-3  # stopped once below its tolerance ...
    assert loose.last_iterations < strict.last_iterations  # ... earlier than the strict solve (≤ max_iter 20),
    assert strict.last_residual < loose.last_residual  # which went on to a smaller residual
    prof, _ = _ok("profile", out, "--compare", base, "--data", DATA, "--batch-sizes", "1", "--runs", "1",
                  "--warmup", "0", "--json")
    assert prof["solver"]["tol"] == prof["compare"]["solver"]["tol"] == 1e-4  # timed at one tolerance
    own, _ = _ok("profile", out, "--data", DATA, "--own-tol", "--batch-sizes", "1", "--runs", "1", "--warmup", "0",
                 "--json")
    assert own["solver"]["tol"] == 4e-3
    _, err = _ok("train", "--model", "deq-edsr-tiny", "--data", DATA, "--tol", "1e-3", "--epochs", "0",
                 "--device", "cpu", "-o", tmp_path / "t.safetensors")
    assert ckpt.load(tmp_path / "t.safetensors").model.tol == 1e-3
