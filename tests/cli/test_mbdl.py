"""MBDL (Park et al.): MRI reconstruction through the same CLI — train, evaluate, prune (the model's
own protected layers), the three fine-tuning strategies, profile with solver iterations."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli, run_main

DATA = "phantom:n=32,val=8,size=32,coils=4"


def _ok(*args):
    r = run_cli(*args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return json.loads(r.stdout) if "--json" in args else r


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("mbdl")
    _ok("train", "--model", "deq-edsr-tiny", "--data", DATA, "--epochs", "15", "--optimizer", "adam", "--lr", "1e-3",
        "--batch-size", "4", "--device", "cpu", "-o", d / "base.safetensors")
    prune = _ok("prune", d / "base.safetensors", "--method", "l1", "--ratio", "0.4", "-o", d / "p.safetensors", "--json")
    return d, prune


def _psnr(path):
    return _ok("evaluate", path, "--data", DATA, "--device", "cpu", "--json")


def test_evaluate_reports_reconstruction_metrics(chain):
    d, _ = chain
    res = _psnr(d / "base.safetensors")
    assert {"psnr", "ssim", "nmse", "dc"} <= set(res) and res["samples"] == 8
    assert res["psnr"] > 20 and 0 < res["ssim"] <= 1 and 0 < res["nmse"] < 0.2
    header = ckpt.read_header((d / "base.safetensors").read_bytes())
    assert header.task == "reconstruction" and header.num_classes is None and header.input_shape == [17, 32, 32]


def test_pruning_keeps_the_declared_output_layers_and_reloads(chain, tmp_path):
    d, prune = chain
    model = ckpt.load(d / "p.safetensors").model
    assert model.prior.tail[0].out_channels == 2  # protected by the model entry, not by a flag
    assert model.prior.head[0].out_channels == int(16 * 0.6) and prune["params_after"] < 0.4 * prune["params_before"]
    here, fresh = reload_in_fresh_process(d / "p.safetensors", tmp_path)
    assert torch.equal(here, fresh)


def test_finetuning_recovers_psnr_lost_by_pruning(chain):
    """On phantoms, 40% pruning costs PSNR and supervised fine-tuning wins most of it back."""
    d, _ = chain
    base, oneshot = _psnr(d / "base.safetensors")["psnr"], _psnr(d / "p.safetensors")["psnr"]
    assert oneshot < base - 0.2
    _ok("finetune", d / "p.safetensors", "--data", DATA, "--strategy", "supervised", "--optimizer", "adam",
        "--lr", "1e-3", "--epochs", "5", "--batch-size", "4", "--device", "cpu", "-o", d / "sup.safetensors")
    assert _psnr(d / "sup.safetensors")["psnr"] > oneshot + 0.5 * (base - oneshot)


@pytest.mark.parametrize("strategy", ["distill", "selfsup"])
def test_ground_truth_free_strategies_never_read_the_target(chain, monkeypatch, strategy):
    """Targets replaced by NaN: a strategy that touched them (loss, background mask, selection)
    would train or select on NaN. Supervised does, as the control shows."""
    import prunecli.data.mri as mri

    real = mri.packed
    monkeypatch.setattr(mri, "packed", lambda *a: (real(*a)[0], torch.full_like(real(*a)[1], float("nan"))))
    d, _ = chain
    out = d / f"{strategy}.safetensors"
    teacher = ["--teacher", d / "base.safetensors"] if strategy == "distill" else []
    res = _ok("finetune", d / "p.safetensors", "--data", DATA, "--strategy", strategy, *teacher, "--optimizer", "adam",
              "--lr", "1e-4", "--epochs", "2", "--batch-size", "4", "--select", "val_dc", "--device", "cpu",
              "-o", out, "--json")
    assert res["val_dc"] == res["val_dc"] and "val_psnr" not in res  # finite, and no ground-truth metric
    assert all(torch.isfinite(p).all() for p in ckpt.load(out).model.parameters())
    control = _ok("finetune", d / "p.safetensors", "--data", DATA, "--strategy", "supervised", "--epochs", "1",
                  "--batch-size", "4", "--device", "cpu", "-o", d / "control.safetensors", "--json")
    assert control["train_loss"] != control["train_loss"]  # NaN: the supervised loss reads the target


def test_profile_reports_solver_iterations_at_one_tolerance(chain):
    d, _ = chain
    res = _ok("profile", d / "p.safetensors", "--compare", d / "base.safetensors", "--data", DATA,
              "--batch-sizes", "1", "--runs", "2", "--warmup", "0", "--json")
    assert res["solver"]["tol"] == res["compare"]["solver"]["tol"] == 1e-4
    assert 1 <= res["solver"]["iterations"] <= 20 and res["compare"]["solver"]["iterations"] >= 1
    own = _ok("profile", d / "p.safetensors", "--data", DATA, "--tol", "1e-2", "--batch-sizes", "1", "--runs", "1",
              "--warmup", "0", "--json")
    assert own["solver"]["tol"] == 1e-2 and own["solver"]["iterations"] <= res["solver"]["iterations"]


def test_task_mismatch_and_strategy_errors(chain, tmp_path, capsys):
    d, _ = chain
    assert run_main("evaluate", d / "base.safetensors", "--data", SYNTH) == 2
    assert "reconstruction" in capsys.readouterr().err
    assert run_main("finetune", d / "p.safetensors", "--data", DATA, "--strategy", "distill",
                    "-o", tmp_path / "x.safetensors") == 2
    assert "--teacher" in capsys.readouterr().err
    assert run_main("train", "--model", "resnet_tiny", "--data", DATA, "-o", tmp_path / "x.safetensors") == 2


@pytest.mark.parametrize("model", ["varnet-tiny", "e2e-varnet-tiny"])
def test_pruned_varnets_reload_identically_and_take_every_strategy(model, tmp_path):
    """Pruned VarNet / E2E-VarNet checkpoints give identical reconstructions in a fresh process,
    and self-supervised fine-tuning runs on E2E-VarNet (the reference crashed on its tuple output)."""
    base, pruned = tmp_path / "b.safetensors", tmp_path / "p.safetensors"
    _ok("train", "--model", model, "--data", DATA, "--epochs", "1", "--batch-size", "4", "--optimizer", "adam",
        "--lr", "1e-3", "--device", "cpu", "-o", base)
    res = _ok("prune", base, "--method", "l1", "--ratio", "0.4", "-o", pruned, "--json")
    assert res["params_after"] < res["params_before"]
    here, fresh = reload_in_fresh_process(pruned, tmp_path)
    assert here.shape == (2, 2, 32, 32) and torch.equal(here, fresh)
    if model.startswith("e2e"):  # the model whose tuple output broke the reference's REI loss
        out = _ok("finetune", pruned, "--data", DATA, "--strategy", "selfsup", "--optimizer", "adam", "--lr", "1e-4",
                  "--epochs", "1", "--batch-size", "4", "--select", "val_dc", "--device", "cpu",
                  "-o", tmp_path / "ss.safetensors", "--json")
        assert out["val_dc"] == out["val_dc"]
