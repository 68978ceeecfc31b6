"""Calibration draws for data-driven pruning (taylor, isomorphic, similarity): a seeded random
sample of the training split, evaluation transform, model in eval mode, recorded in the outputs."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.data import build_data
from prunecli.data.calibration import draw
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import MasksSidecar
from tests.conftest import SYNTH, run_cli

CLASSES, PER_CLASS = 4, 6


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    """An ImageNet-style folder, 4 classes × 6 PNGs: its file order is sorted by class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    rng = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):
                pixels = torch.randint(0, 256, (36, 40, 3), generator=rng, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return f"imagefolder:{root}?size=32"


def first_batches_classes(spec: str, images: int) -> int:
    """Distinct classes the old calibration saw: the first `images` of the unshuffled loader."""
    x, y = next(iter(build_data(spec).loader("train", images)))
    return len(set(y.tolist()))


def test_draw_is_seeded_random_and_covers_more_classes_than_the_first_images(sorted_folder):
    dataset = build_data(sorted_folder)
    a = draw(dataset, 8, seed=0, batch_size=3)
    assert draw(build_data(sorted_folder), 8, seed=0, batch_size=5).indices == a.indices  # batch size: same images
    assert draw(dataset, 8, seed=1, batch_size=3).indices != a.indices
    assert len(set(a.indices)) == 8 and a.indices != list(range(8))  # without replacement, not file order
    assert first_batches_classes(sorted_folder, 8) == 2
    assert a.record["classes"] > 2
    assert a.record == {"data": sorted_folder, "seed": 0, "images": 8, "classes": a.record["classes"],
                        "split": "train", "transform": "eval", "preprocess": None}
    # The batches are exactly those samples, in drawn order, with the evaluation transform (no augmentation).
    xs, ys = zip(*a.batches)
    assert [len(x) for x in xs] == [3, 3, 2]
    full_x, full_y = zip(*dataset.loader("train", 64))
    full_x, full_y = torch.cat(full_x), torch.cat(full_y)
    assert torch.equal(torch.cat(xs), full_x[a.indices]) and torch.equal(torch.cat(ys), full_y[a.indices])
    assert a.record["classes"] == len(set(full_y[a.indices].tolist()))


def test_draw_opens_only_the_images_it_uses(sorted_folder, monkeypatch):
    import prunecli.data.imagefolder as folder  # images are decoded by prunecli.data.images.open_rgb

    opened = []
    real = folder.open_rgb
    monkeypatch.setattr(folder, "open_rgb", lambda path: opened.append(path) or real(path))
    calibration = draw(build_data(sorted_folder), 5, seed=3, batch_size=2)
    assert opened == []  # drawing reads the file list, not the images
    list(calibration.batches)
    assert len(opened) == 5


def test_draw_on_in_memory_and_reconstruction_data_and_too_many_images():
    from prunecli.errors import UserError

    digits = build_data("digits")
    drawn = draw(digits, 40, seed=0, batch_size=16)
    labels = torch.cat([y for _, y in drawn.batches])
    assert len(labels) == 40 and drawn.record["classes"] == len(set(labels.tolist()))
    assert drawn.indices != list(range(40))
    synth = build_data(SYNTH)
    with pytest.raises(UserError, match="only 96"):
        draw(synth, 97, seed=0, batch_size=8)
    assert draw(synth, 500, seed=0, batch_size=8, exact=False).record["images"] == 96  # the whole split
    phantoms = build_data("phantom:n=5,val=2,size=16,coils=2")  # reconstruction: no labels
    drawn = draw(phantoms, 3, seed=0, batch_size=2)
    assert drawn.record["classes"] is None and drawn.record["images"] == 3
    full = torch.cat([x for x, _ in phantoms.loader("train", 5)])
    assert torch.equal(torch.cat([x for x, _ in drawn.batches]), full[drawn.indices])


def test_gradients_are_accumulated_in_eval_mode_and_summed():
    """BN keeps its running statistics (the old code ran calibration in train mode, which moved
    them), and the gradient is the sum over batches of eval-mode gradients."""
    from prunecli.models import build_model
    from prunecli.pruning.run import accumulate_gradients

    torch.manual_seed(0)
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    model.train()
    for x, _ in build_data(SYNTH).loader("train", 32):  # give BN non-trivial running stats
        model(x)
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    calibration = draw(build_data(SYNTH), 24, seed=0, batch_size=8)
    accumulate_gradients(model, calibration)
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in bn.items())
    summed = model.conv1.weight.grad.clone()
    expected = torch.zeros_like(summed)
    for x, y in calibration.batches:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        expected += model.conv1.weight.grad
    torch.testing.assert_close(summed, expected)


def test_prune_taylor_records_calibration_and_keeps_bn_statistics(tiny_ckpt, sorted_folder, tmp_path, monkeypatch):
    seen = []
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda out, y, **kw: seen.append(y) or real(out, y, **kw))
    out = tmp_path / "p.safetensors"
    r = run_cli("prune", tiny_ckpt, "--method", "taylor", "--ratio", "0.3", "--data", sorted_folder,
                "--calib-batches", "2", "--batch-size", "4", "--seed", "5", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    masks = MasksSidecar.model_validate_json((tmp_path / "p.masks.json").read_text())
    labels = torch.cat(seen).tolist()  # what the gradients were computed on, counted by hand
    assert len(labels) == 8 and [len(y) for y in seen] == [4, 4]
    cal = masks.calibration
    assert (cal.data, cal.seed, cal.images, cal.split, cal.transform, cal.mode) == (
        sorted_folder, 5, 8, "train", "eval", "eval")
    assert cal.classes == len(set(labels)) > first_batches_classes(sorted_folder, 8)
    # Eval mode: BN running statistics of the kept channels are the unpruned model's.
    base, pruned = ckpt.load(tiny_ckpt).model, ckpt.load(out).model
    kept = next(layer.kept for layer in masks.layers if layer.name == "conv1")
    assert torch.equal(pruned.bn1.running_mean, base.bn1.running_mean[kept])
    assert torch.equal(pruned.bn1.running_var, base.bn1.running_var[kept])


def test_prune_without_data_records_no_calibration(tiny_ckpt, tmp_path):
    out = tmp_path / "l1.safetensors"
    assert run_cli("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "-o", out).exit_code == 0
    assert MasksSidecar.model_validate_json((tmp_path / "l1.masks.json").read_text()).calibration is None


def test_timm_model_is_calibrated_with_its_own_preprocessing(sorted_folder, tmp_path):
    base, out = tmp_path / "vit.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", "vit_tiny_test", "--data", SYNTH, "--epochs", "0", "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "isomorphic", "--importance", "taylor", "--ratio", "0.25",
                "--calib-data", sorted_folder, "--calib-batches", "1", "--batch-size", "6", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    cal = json.loads((tmp_path / "p.masks.json").read_text())["calibration"]
    assert cal["images"] == 6 and cal["mode"] == "eval"
    assert cal["preprocess"]["interpolation"] == "bicubic" and cal["preprocess"]["input_size"] == [3, 32, 32]


def test_similarity_samples_are_a_seeded_draw_recorded_in_report_and_sidecar(tiny_ckpt, tmp_path, monkeypatch):
    import prunecli.analysis.similarity as sim

    drawn = []
    real = sim.collect

    def spy(model, groups, calibration, device):
        drawn.append(torch.cat([y for _, y in calibration.batches]).tolist())
        return real(model, groups, calibration, device)

    monkeypatch.setattr(sim, "collect", spy)
    reports = {}
    for seed in (0, 1):
        path = tmp_path / f"sim{seed}.json"
        r = run_cli("analyze", tiny_ckpt, "--method", "similarity", "--data", SYNTH, "--samples", "12",
                    "--thresholds", "0.7", "--device", "cpu", "--seed", str(seed), "-o", path)
        assert r.exit_code == 0, r.output + repr(r.exception)
        reports[seed] = json.loads(path.read_text())
    for seed, labels in zip((0, 1), drawn):
        cal = reports[seed]["calibration"]
        assert (cal["seed"], cal["images"], cal["mode"]) == (seed, 12, "eval")
        assert cal["classes"] == len(set(labels))
        assert reports[seed]["options"]["seed"] == seed
    matrix = {seed: torch.tensor(reports[seed]["layers"][0]["matrix"]) for seed in (0, 1)}
    assert not torch.equal(matrix[0], matrix[1])  # other images (the old first-N ignored any seed)
    first = torch.cat([y for _, y in build_data(SYNTH).loader("train", 12)][:1]).tolist()
    assert drawn[0] != first
    # prune: fresh feature maps with the same seed draw the same images; --reuse carries the record.
    fresh, reused = tmp_path / "f.safetensors", tmp_path / "r.safetensors"
    assert run_cli("prune", tiny_ckpt, "--method", "similarity", "--threshold", "0.7", "--data", SYNTH,
                   "--samples", "12", "--seed", "1", "-o", fresh).exit_code == 0
    assert drawn[2] == drawn[1]
    assert run_cli("prune", tiny_ckpt, "--method", "similarity", "--threshold", "0.7",
                   "--reuse", tmp_path / "sim1.json", "-o", reused).exit_code == 0
    a = MasksSidecar.model_validate_json((tmp_path / "f.masks.json").read_text())
    b = MasksSidecar.model_validate_json((tmp_path / "r.masks.json").read_text())
    assert a.calibration.model_dump() == b.calibration.model_dump() == reports[1]["calibration"]
