"""Issue 14 item 1: an image folder's input size follows the model (registry entry, timm's
pretrained_cfg, then the checkpoint), `?size=N` overrides it, small inputs train with a padded
crop, and the resolved size and transforms are said once on stderr. Real 32×32 PNG folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prunecli.data import build_data
from prunecli.io import checkpoint as ckpt
from tests.conftest import run_main
from tests.unit.test_ham10000 import write_ham


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """DIR/train/<a|b>/*.png and DIR/val/...: 32×32 RGB PNGs, 6 + 3 per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imf32")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _stderr(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width


def _train(model: str, data: str, out, capsys, epochs: int = 1) -> tuple[list[int], str]:
    code = run_main("train", "--model", model, "--data", data, "--epochs", str(epochs), "-b", "8",
                    "--device", "cpu", "-o", out)
    err = _stderr(capsys)
    assert code == 0, err
    return list(ckpt.load(out).header.input_shape), err


def test_resnet20_trains_at_32_with_a_padded_crop_and_evaluate_keeps_it(folder, tmp_path, capsys):
    out = tmp_path / "r20.safetensors"
    shape, err = _train("resnet20", f"imagefolder:{folder}", out, capsys)
    assert shape == [3, 32, 32]
    assert err.count("data: input 32×32 (the model's input size)") == 1
    assert "random crop with 4-px padding + flip" in err and "RandomResizedCrop" not in err
    assert run_main("evaluate", out, "--data", f"imagefolder:{folder}", "--device", "cpu", "--json") == 0
    captured = capsys.readouterr()
    assert "data: input 32×32 (the model's input size)" in " ".join(captured.err.split())
    assert json.loads(captured.out)["samples"] == 6
    pruned = tmp_path / "p.safetensors"  # calibration images at the checkpoint's size too
    assert run_main("prune", out, "--method", "taylor", "--ratio", "0.3", "--data", f"imagefolder:{folder}",
                    "-b", "8", "--calib-batches", "1", "-o", pruned) == 0
    assert "data: input 32×32 (the model's input size)" in _stderr(capsys)


def test_size_option_overrides_the_model(folder, tmp_path, capsys):
    shape, err = _train("resnet20", f"imagefolder:{folder}?size=48", tmp_path / "r48.safetensors", capsys)
    assert shape == [3, 48, 48]
    assert "data: input 48×48 (?size=N)" in err and "6-px padding" in err


def test_registry_entry_size_resizes_small_files(folder, tmp_path, capsys):
    """levit_tiny_test is declared 64×64 (its attention biases fix the resolution): the 32×32 files
    are resized to 64, and fine-tuning the checkpoint later works at 64 again."""
    out = tmp_path / "levit.safetensors"
    shape, err = _train("levit_tiny_test", f"imagefolder:{folder}", out, capsys)
    assert shape == [3, 64, 64]
    assert "data: input 64×64 (the model's input size)" in err and "8-px padding" in err
    ft = tmp_path / "levit_ft.safetensors"
    code = run_main("finetune", out, "--data", f"imagefolder:{folder}", "--epochs", "1", "-b", "8",
                    "--device", "cpu", "-o", ft)
    assert code == 0 and "data: input 64×64" in _stderr(capsys)


def test_timm_model_takes_its_pretrained_cfg_size(folder, tmp_path, capsys):
    """timm's test_vit declares input_size (3, 160, 160) in its pretrained_cfg: above 64 px, the
    ImageNet recipe; evaluation then uses the model's own preprocessing at the recorded 160."""
    out = tmp_path / "vit.safetensors"
    shape, err = _train("timm:test_vit", f"imagefolder:{folder}", out, capsys, epochs=0)
    assert shape == [3, 160, 160]
    assert "data: input 160×160 (the model's input size); train: RandomResizedCrop 160×160" in err
    assert run_main("evaluate", out, "--data", f"imagefolder:{folder}", "--device", "cpu", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["preprocess"]["input_size"] == [3, 160, 160]
    assert "the model's own preprocessing" in " ".join(captured.err.split())


def test_loaders_at_the_model_size(folder):
    """The seam itself: without `?size=N` the data is remade at the model's size; with it, never."""
    ds = build_data(f"imagefolder:{folder}")
    assert ds.input_shape == (3, 224, 224)  # no model known yet: the old default
    small = ds.for_input((3, 32, 32))
    x, _ = next(iter(small.loader("train", 12, train=True, seed=0)))
    v, _ = next(iter(small.loader("val", 6)))
    assert x.shape == (12, 3, 32, 32) and v.shape == (6, 3, 32, 32)
    # a padded crop shifts the image: some rows or columns at the border are pure padding (black)
    black = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    border = torch.stack([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], 1)  # N×4×C×32
    padded = (border - black.view(1, 1, 3, 1)).abs().amax((2, 3)) < 1e-5
    assert padded.any(), "no image was shifted by the padded crop"
    assert small.spec == ds.spec
    fixed = build_data(f"imagefolder:{folder}?size=40")
    assert fixed.for_input((3, 32, 32)) is fixed


def test_ham10000_follows_the_model(tmp_path, capsys):
    root, _ = write_ham(tmp_path / "ham")
    shape, err = _train("resnet20", f"ham10000:{root}", tmp_path / "ham.safetensors", capsys)
    assert shape == [3, 32, 32] and "data: input 32×32 (the model's input size)" in err
    assert build_data(f"ham10000:{root}?size=24").for_input((3, 32, 32)).input_shape == (3, 24, 24)


def test_holdout_survives_the_resize_to_the_model(folder):
    """`holdout=N` and the model's size compose: the resized data keeps the same carved split."""
    data = build_data(f"imagefolder:{folder}?holdout=4")
    sized = data.for_input((3, 32, 32))
    assert sized is not data and sized.holdout == 4 and sized.input_shape == (3, 32, 32)
    train, held = sized.loader("train", 64), sized.loader("val", 64)
    assert len(train.targets()) == 8 and len(held.targets()) == 4
    assert len(sized.loader("test", 64).targets()) == 6
