"""Issue 14 item 4: reconstruction models train with the MBDL reference's optimiser (Adam, its lr
and weight decay, constant schedule) unless told otherwise; classification keeps SGD/cosine.
The resolved values are said on stderr and recorded in the lineage (prunecli/engine/defaults.py)."""

from __future__ import annotations

import pytest

from prunecli.io import checkpoint as ckpt
from tests.conftest import run_main

DATA = "phantom:n=4,val=2,size=16"
KEYS = ("optimizer", "lr", "weight_decay", "schedule")


def _options(path) -> dict:
    options = ckpt.load(path).header.lineage[-1].options
    return {k: options[k] for k in KEYS}


def _train(model: str, out, *extra: str, data: str = DATA) -> None:
    assert run_main("train", "--model", model, "--data", data, "--epochs", "1", "-b", "2", "--device", "cpu",
                    "-o", str(out), *extra) == 0


@pytest.fixture(scope="module")
def deq(tmp_path_factory):
    out = tmp_path_factory.mktemp("recon") / "deq.safetensors"
    _train("deq-edsr-tiny", out)
    return out


def test_a_deq_trains_with_adam_at_the_reference_lr_and_a_constant_schedule(deq):
    assert _options(deq) == {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant"}


def test_the_resolved_defaults_are_said_once_on_stderr(tmp_path, capfd):
    _train("varnet-tiny", tmp_path / "v.safetensors")
    err = " ".join(capfd.readouterr().err.split())
    assert err.count("reconstruction defaults") == 1
    assert "--optimizer adam --lr 0.001 --wd 1e-08 --schedule constant" in err
    assert _options(tmp_path / "v.safetensors") == {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-8,
                                                    "schedule": "constant"}


def test_options_the_user_gives_are_kept_and_only_the_others_filled(tmp_path):
    _train("deq-edsr-tiny", tmp_path / "d.safetensors", "--optimizer", "sgd", "--lr", "0.01")
    assert _options(tmp_path / "d.safetensors") == {"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0,
                                                    "schedule": "constant"}


def test_self_supervised_deq_finetuning_takes_the_references_smaller_lr(deq, tmp_path):
    out = tmp_path / "ss.safetensors"
    assert run_main("finetune", str(deq), "--data", DATA, "--strategy", "selfsup", "--epochs", "1", "-b", "2",
                    "--device", "cpu", "-o", str(out)) == 0
    assert _options(out) == {"optimizer": "adam", "lr": 1e-5, "weight_decay": 1e-8, "schedule": "constant"}


def test_classification_keeps_sgd_and_cosine(tmp_path, capfd):
    _train("resnet_tiny", tmp_path / "r.safetensors", data="synthetic:n=8,val=4,classes=2")
    assert _options(tmp_path / "r.safetensors") == {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4,
                                                    "schedule": "cosine"}
    assert "reconstruction defaults" not in capfd.readouterr().err
