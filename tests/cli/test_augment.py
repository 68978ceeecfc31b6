"""The timm augmentation stack (issue 13): mixup/cutmix soft targets, DeiT's loss with a teacher,
RandAugment/random erasing seeded per (seed, epoch), exact resume, holdout splits,
`evaluate --split test|val`, and drop path that leaves the checkpoint reloading bit-identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from prunecli.data import build_data
from prunecli.engine.config import TrainConfig
from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, reload_in_fresh_process, run_cli
from tests.unit.test_data import write_cifar10, write_folder
from tests.unit.test_ham10000 import make_rows, write_ham


def _ok(*args):
    r = run_cli(*args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


# --- mixup / cutmix -----------------------------------------------------------------------------

def test_mixup_cutmix_give_soft_targets_seeded_by_step_and_leave_numpy_alone():
    from prunecli.engine.augment import Mixer

    mix = Mixer(TrainConfig(mixup=0.8, cutmix=1.0, label_smoothing=0.1, seed=3), num_classes=4)
    x = torch.randn(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    mix.set_epoch(2)
    xa, ta = mix(x.clone(), y)  # timm mixes in place
    xb, tb = mix(x.clone(), y)  # the next step draws another lambda
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global stream untouched
    assert ta.shape == (7, 4) and ta.dtype == torch.float32
    assert torch.allclose(ta.sum(1), torch.ones(7))
    assert (ta[:6].max(1).values < 1 - 0.1 + 0.1 / 4 - 1e-6).all()  # mixed: below the smoothed one-hot
    assert not torch.equal(xa[:6], x[:6]) and torch.equal(xa[6], x[6])  # odd batch: the last stays unmixed
    assert torch.allclose(ta[6], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    assert not torch.equal(ta, tb)
    mix.set_epoch(2)  # same (seed, epoch, step): the same mix, as a resumed run needs
    xc, tc = mix(x.clone(), y)
    assert torch.equal(xa, xc) and torch.equal(ta, tc)


def test_hard_distillation_with_mixup_is_deits_loss():
    """DeiT losses.py DistillationLoss('hard', alpha=0.5) with SoftTargetCrossEntropy on Mixup targets:
    0.5·SoftTargetCE(cls, mixed targets) + 0.5·CE(dist, teacher argmax), on a hand-made batch."""
    from timm.loss import SoftTargetCrossEntropy

    from prunecli.engine.loop import hard_distill_loss, kd_loss

    cls = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    dist = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    teacher = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # by hand: −Σ t·log softmax(cls), and CE against the teacher's classes 1 and 0
    ce_cls = -(soft * cls.log_softmax(1)).sum(1).mean()
    ce_dist = -(dist.log_softmax(1)[0, 1] + dist.log_softmax(1)[1, 0]) / 2
    expected = 0.5 * ce_cls + 0.5 * ce_dist
    got = hard_distill_loss((cls, dist), teacher, soft, 0.5, label_smoothing=0.1)  # smoothing is in `soft`
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got, 0.5 * SoftTargetCrossEntropy()(cls, soft) + 0.5 * F.cross_entropy(dist, teacher.argmax(1)))
    # with hard labels the CE term alone is label-smoothed, as DeiT's base criterion
    hard = hard_distill_loss((cls, dist), teacher, torch.tensor([0, 2]), 0.5, label_smoothing=0.1)
    assert torch.allclose(hard, 0.5 * F.cross_entropy(cls, torch.tensor([0, 2]), label_smoothing=0.1) + 0.5 * ce_dist)
    # --kd-label-smoothing: the Isomorphic-Pruning reference's one smoothed criterion on both terms
    both = hard_distill_loss((cls, dist), teacher, torch.tensor([0, 2]), 0.5, label_smoothing=0.1,
                             teacher_smoothing=0.1)
    assert torch.allclose(both, 0.5 * F.cross_entropy(cls, torch.tensor([0, 2]), label_smoothing=0.1)
                          + 0.5 * F.cross_entropy(dist, torch.tensor([1, 0]), label_smoothing=0.1))
    assert not torch.allclose(both, hard)
    soft_kd = kd_loss(cls, teacher, soft, 0.3, 2.0)
    kl = F.kl_div(F.log_softmax(cls / 2, 1), F.log_softmax(teacher / 2, 1), reduction="batchmean", log_target=True)
    assert torch.allclose(soft_kd, 0.7 * ce_cls + 0.3 * 4 * kl, atol=1e-6)


def test_mixup_training_resumes_exactly_and_distils_with_the_mixed_input(tmp_path, tiny_ckpt):
    common = ["--model", "resnet_tiny", "--data", SYNTH, "--batch-size", "31", "--mixup", "0.8", "--cutmix", "1.0",
              "--label-smoothing", "0.1", "--epochs", "2", "--device", "cpu"]
    _ok("train", *common, "-o", tmp_path / "full.safetensors")
    _ok("train", *common, "--stop-after", "1", "-o", tmp_path / "part.safetensors")
    _ok("train", *common, "--resume", "-o", tmp_path / "part.safetensors")
    full, part = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "part.safetensors")
    assert all(torch.equal(full[k], part[k]) for k in full)
    header = ckpt.load(tmp_path / "full.safetensors").header
    assert header.lineage[-1].options["mixup"] == 0.8 and header.lineage[-1].options["cutmix"] == 1.0
    # fine-tuning with a teacher (hard, DeiT) and mixup: runs, and mixing changes the result
    ft = ["finetune", tiny_ckpt, "--data", SYNTH, "--teacher", tiny_ckpt, "--distill", "hard", "--epochs", "1",
          "--batch-size", "32", "--device", "cpu", "--json"]
    mixed = json.loads(_ok(*ft, "--mixup", "0.8", "-o", tmp_path / "m.safetensors").stdout)
    plain = json.loads(_ok(*ft, "-o", tmp_path / "p.safetensors").stdout)
    assert np.isfinite(mixed["train_loss"]) and mixed["train_loss"] != plain["train_loss"]
    assert "val_loss" in mixed  # validation stays hard-label CE
    smoothed = json.loads(_ok(*ft, "--label-smoothing", "0.1", "--kd-label-smoothing",
                              "-o", tmp_path / "s.safetensors").stdout)
    unsmoothed = json.loads(_ok(*ft, "--label-smoothing", "0.1", "-o", tmp_path / "u.safetensors").stdout)
    assert smoothed["train_loss"] > unsmoothed["train_loss"]  # smoothing the teacher term adds to the loss
    assert ckpt.load(tmp_path / "s.safetensors").header.lineage[-1].options["kd_label_smoothing"] is True


# --- RandAugment / random erasing -----------------------------------------------------------------

def test_randaugment_reprob_are_timms_seeded_per_seed_and_epoch(tmp_path):
    write_folder(tmp_path, train_n=4)
    ds = build_data(f"imagefolder:{tmp_path}?size=16")

    def epoch(e, aug, seed=0, workers=0):
        ds.train_aug = aug
        loader = ds.loader("train", 4, train=True, seed=seed, workers=workers)
        loader.set_epoch(e)
        return _all(loader)[0]

    aug = {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 1.0}
    x1 = epoch(1, aug)
    torch.rand(3), np.random.rand(3)  # the caller's RNG use must not matter
    import random
    random.random()
    assert torch.equal(x1, epoch(1, aug))
    assert torch.equal(x1, epoch(1, aug, workers=1))
    assert not torch.equal(x1, epoch(2, aug)) and not torch.equal(x1, epoch(1, aug, seed=1))
    assert not torch.equal(x1, epoch(1, None))  # the family's own transform without the options
    # random erasing at p=1 with per-pixel noise leaves values outside the normalised image range
    assert not torch.equal(epoch(1, {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.0}), x1)


def test_randaugment_training_resumes_exactly(tmp_path):
    write_folder(tmp_path / "img", train_n=4)
    common = ["--model", "resnet_tiny", "--data", f"imagefolder:{tmp_path / 'img'}?size=32", "--batch-size", "4",
              "--randaugment", "rand-m9-mstd0.5-inc1", "--reprob", "0.25", "--epochs", "2", "--device", "cpu"]
    _ok("train", *common, "-o", tmp_path / "full.safetensors")
    _ok("train", *common, "--stop-after", "1", "-o", tmp_path / "part.safetensors")
    _ok("train", *common, "--resume", "-o", tmp_path / "part.safetensors")
    full, part = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "part.safetensors")
    assert all(torch.equal(full[k], part[k]) for k in full)


# --- holdout=N and evaluate --split ---------------------------------------------------------------

def test_cifar_holdout_is_seeded_disjoint_and_test_is_the_test_batch(tmp_path):
    write_cifar10(tmp_path)  # 20 train, 10 test
    ds = build_data(f"cifar10:{tmp_path}?aug=none&holdout=6")
    xt, _ = _all(ds.loader("train", 64))
    xv, _ = _all(ds.loader("val", 64))
    xs, _ = _all(ds.loader("test", 64))
    xall, _ = _all(build_data(f"cifar10:{tmp_path}?aug=none").loader("train", 64))
    xtest, _ = _all(build_data(f"cifar10:{tmp_path}?aug=none").loader("val", 64))
    assert (len(xt), len(xv), len(xs)) == (14, 6, 10)
    rows = {tuple(r.flatten().tolist()) for r in xall}
    train_rows, val_rows = ({tuple(r.flatten().tolist()) for r in x} for x in (xt, xv))
    assert not train_rows & val_rows and train_rows | val_rows == rows
    assert torch.equal(xs, xtest)
    again = build_data(f"cifar10:{tmp_path}?holdout=6&aug=none")  # option order does not matter
    assert torch.equal(_all(again.loader("val", 64))[0], xv)
    assert (ds.sizes["train"], ds.sizes["holdout"]) == (14, 6)


def test_imagefolder_holdout_sizes_and_disjoint_files(tmp_path):
    write_folder(tmp_path, train_n=5)
    ds = build_data(f"imagefolder:{tmp_path}?size=16&holdout=3")
    train, held = ds.loader("train", 4), ds.loader("val", 4)
    assert (len(train.samples), len(held.samples), len(ds.loader("test", 4).samples)) == (7, 3, 4)
    files = lambda loader: {p for p, _ in loader.samples.base.samples}  # noqa: E731
    assert not files(train) & files(held) and len(files(train) | files(held)) == 10
    assert train.targets() == [y for _, y in train.samples.base.samples]


def test_ham10000_holdout_keeps_lesions_grouped(tmp_path):
    root, rows = write_ham(tmp_path / "ham")
    lesion = {r["image_id"]: r["lesion_id"] for r in make_rows()}
    ds = build_data(f"ham10000:{root}?size=16&holdout=4")
    groups = {split: [lesion[p.stem] for p, _ in ds.loader(split, 4).samples.base.samples]
              for split in ("train", "val", "test")}
    assert len(groups["val"]) == 4
    assert not set(groups["train"]) & set(groups["val"]) and not set(groups["test"]) & set(groups["val"])
    base = build_data(f"ham10000:{root}?size=16")
    assert len(groups["train"]) + 4 == base.sizes["train"] and len(groups["test"]) == base.sizes["val"]
    # timm's training transform on HAM10000 too, seeded per (seed, epoch)
    ds.train_aug = {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.5}

    def epoch(e):
        loader = ds.loader("train", 8, train=True)
        loader.set_epoch(e)
        return _all(loader)[0]

    assert torch.equal(epoch(1), epoch(1)) and not torch.equal(epoch(1), epoch(2))


def test_evaluate_split_test_and_val_differ_with_holdout(tmp_path):
    (tmp_path / "c").mkdir()
    write_cifar10(tmp_path / "c")
    spec = f"cifar10:{tmp_path / 'c'}?holdout=6"
    out = tmp_path / "m.safetensors"
    _ok("train", "--model", "resnet_tiny", "--data", spec, "--epochs", "1", "--batch-size", "8", "--device", "cpu",
        "-o", out)
    res = {s: json.loads(_ok("evaluate", out, "--data", spec, "--split", s, "--json").stdout)
           for s in ("val", "test")}
    assert (res["val"]["samples"], res["test"]["samples"]) == (6, 10)
    assert ckpt.load(out).header.metrics["val_loss"] == pytest.approx(res["val"]["loss"], rel=1e-5)
    plain = json.loads(_ok("evaluate", out, "--data", f"cifar10:{tmp_path / 'c'}", "--split", "val",
                           "--json").stdout)
    assert plain["samples"] == 10 and plain["loss"] == pytest.approx(res["test"]["loss"])


# --- drop path / dropout ----------------------------------------------------------------------------

def test_drop_path_finetune_trains_stochastically_and_reloads_bit_identically(tmp_path):
    base = tmp_path / "vit.safetensors"
    _ok("train", "--model", "vit_tiny_test", "--data", SYNTH, "--epochs", "0", "--device", "cpu", "-o", base)
    out = tmp_path / "ft.safetensors"
    _ok("finetune", base, "--data", SYNTH, "--epochs", "1", "--batch-size", "32", "--optimizer", "adamw",
        "--lr", "1e-3", "--drop-path", "0.5", "--dropout", "0.2", "--device", "cpu", "-o", out)
    loaded = ckpt.load(out)
    assert loaded.header.model == ckpt.load(base).header.model  # what reloads is unchanged
    assert loaded.header.lineage[-1].options["drop_path"] == 0.5
    expected, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(expected, fresh)
    # the same setting on a model: training-mode outputs vary (drop path on), eval ones do not
    from prunecli.engine.augment import set_drop

    model = loaded.model
    assert set_drop(model, loaded.header.model.name, loaded.header.model.kwargs, 0.5, 0.2) == 3
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_drop_path_on_a_model_without_it_is_one_error(tmp_path, tiny_ckpt):
    r = run_cli("finetune", tiny_ckpt, "--data", SYNTH, "--drop-path", "0.1", "-o", tmp_path / "o.safetensors")
    assert r.exit_code != 0 and "only timm models have stochastic depth" in str(r.exception)
