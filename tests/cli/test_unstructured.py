"""`prune --method l1-unstructured` end to end: zeros in the saved weights, sidecars, snapshots,
masks kept by `finetune`, and `profile` reporting sparse counts honestly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, run_cli, run_main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("us") / "vgg.safetensors"
    r = run_cli("train", "--model", "vgg_tiny", "--data", SYNTH, "--epochs", "1", "--device", "cpu", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def _sparsity(path, names):
    tensors = load_file(path)
    zeros = sum(int((tensors[n] == 0).sum()) for n in names)
    return zeros / sum(tensors[n].numel() for n in names)


def test_oneshot_writes_real_zeros_and_sidecars(base, tmp_path):
    out = tmp_path / "p.safetensors"
    r = run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.7", "--data", SYNTH,
                "--finetune-epochs", "1", "--device", "cpu", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    header = ckpt.read_header(out.read_bytes())
    names = header.sparse_params
    assert names and all(n.endswith(".weight") for n in names)
    assert _sparsity(out, names) == pytest.approx(0.7, abs=1e-4)  # zeros survive fine-tuning
    assert res["sparsity"] == pytest.approx(0.7, abs=1e-4) and res["steps"] == 1
    assert res["nonzero_params"] < 0.4 * res["params"] and res["sparse_macs"] < res["macs"]
    masks = json.loads((tmp_path / "p.masks.json").read_text())
    assert masks["sparsity"] == pytest.approx(0.7, abs=1e-4)
    assert {row["name"] for row in masks["sparse_layers"]} == set(names)
    assert masks["steps"][0]["finetune_epochs"] == 1 and masks["steps"][0]["val_top1"] is not None
    flops = json.loads((tmp_path / "p.flops.json").read_text())
    assert flops["after"]["params"] == flops["before"]["params"]  # dense shape unchanged
    assert flops["sparse_after"]["params"] == res["nonzero_params"]
    assert not any(k.endswith(("_orig", "_mask")) for k in load_file(out))  # re-parametrisation removed


def test_iterative_snapshots_and_equal_budget(base, tmp_path):
    out, snaps = tmp_path / "it.safetensors", tmp_path / "snaps"
    snaps.mkdir()
    r = run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.6", "--schedule", "iterative",
                "--step", "0.2", "--total-finetune-epochs", "2", "--data", SYNTH, "--device", "cpu",
                "--snapshots", snaps, "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    steps = json.loads((tmp_path / "it.masks.json").read_text())["steps"]
    assert [s["finetune_epochs"] for s in steps] == [0, 1, 1]  # 2 epochs over 3 steps, later steps first
    assert [round(s["sparsity"], 3) for s in steps] == [0.2, 0.4, 0.6]
    files = sorted(p.name for p in snaps.glob("*.safetensors"))
    assert len(files) == 3 and files[0].startswith("step01-all-s0.200")
    for s in steps:
        snap = tmp_path / "snaps" / s["snapshot"].rsplit("/", 1)[-1]
        names = ckpt.read_header(snap.read_bytes()).sparse_params
        assert _sparsity(snap, names) == pytest.approx(s["sparsity"], abs=1e-4)
        assert (snaps / (snap.stem + ".masks.json")).exists() and (snaps / (snap.stem + ".flops.json")).exists()


def test_finetune_and_train_keep_the_masks(base, tmp_path):
    pruned, ft = tmp_path / "p.safetensors", tmp_path / "ft.safetensors"
    assert run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.5", "--finetune-epochs", "0",
                   "-o", pruned).exit_code == 0
    names = ckpt.read_header(pruned.read_bytes()).sparse_params
    r = run_cli("finetune", pruned, "--data", SYNTH, "--epochs", "1", "--lr", "0.05", "--device", "cpu", "-o", ft)
    assert r.exit_code == 0, r.output + repr(r.exception)
    before, after = load_file(pruned), load_file(ft)
    for n in names:
        assert torch.equal(after[n] == 0, before[n] == 0)  # the same mask, exactly
    assert not torch.equal(after[names[0]], before[names[0]])
    assert ckpt.read_header(ft.read_bytes()).sparse_params == names


def test_layerwise_blocks_and_profile_note(base, tmp_path):
    out = tmp_path / "lw.safetensors"
    r = run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.5", "--schedule", "layerwise",
                "--unit", "block", "--finetune-epochs", "0", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    steps = json.loads((tmp_path / "lw.masks.json").read_text())["steps"]
    assert [s["unit"] for s in steps] == ["features.0", "features.4", "features.8", "features.11", "features.15",
                                          "features.19", "classifier.linear1", "classifier.linear2"]
    assert steps[-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    r = run_cli("profile", out, "--batch-sizes", "1", "--runs", "1", "--warmup", "0", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    prof = json.loads(r.stdout)
    assert prof["nonzero_params"] < 0.6 * prof["params"] and "dense kernels" in prof["note"]


@pytest.mark.parametrize("args,msg", [
    (["--method", "l1-unstructured"], "--sparsity"),
    (["--method", "l1-unstructured", "--sparsity", "1.5"], "--sparsity"),
    (["--method", "l1", "--sparsity", "0.5"], "--ratio"),
    (["--method", "l1-unstructured", "--sparsity", "0.5"], "--data"),  # fine-tuning needs data
    (["--method", "l1-unstructured", "--sparsity", "0.5", "--schedule", "gradual", "--finetune-epochs", "0"],
     "--schedule"),
])
def test_user_errors(base, tmp_path, capsys, args, msg):
    assert run_main("prune", base, *args, "-o", tmp_path / "x.safetensors") == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()
