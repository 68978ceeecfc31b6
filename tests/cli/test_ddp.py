"""Multi-process training under torchrun (CPU, gloo): prunecli/engine/dist.py, prunecli/data/shard.py.

The equality tests use a model whose one-process and 2-process runs are mathematically the same:
a ViT (LayerNorm normalises each sample on its own, no dropout), plain SGD steps on the global
batch. torch's SyncBatchNorm runs on CUDA only, so a BatchNorm model on CPU normalises per rank
and would differ; the loaders' equality (every sample and augmentation of the global batch) is
checked directly below for the in-memory, image-folder and MRI loaders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import reload_in_fresh_process, run_cli, run_main, untrained

MODEL = "tv_vit_tiny"
DATA = "synthetic:n=603,val=33,classes=4,seed=1"  # 603 = 30·20 + 3: the last global batch splits 2 + 1
TRAIN = ["--model", MODEL, "--data", DATA, "--epochs", "3", "-b", "20", "--lr", "0.05", "--wd", "0",
         "--device", "cpu"]
WEIGHT_TOL = 1e-5
"""2 ranks vs 1 process after 90 steps: the same arithmetic up to the order of float sums
(DDP's all-reduce adds two half-batch gradients); measured max |Δw| ≈ 1e-7 on weights ≈ 1."""


def torchrun(*args, nproc: int = 2, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "prunecli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def weights(path) -> dict:
    return {k: v for k, v in load_file(path).items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One uninterrupted 2-process run (the reference of several tests) and its 1-process twin."""
    tmp = tmp_path_factory.mktemp("ddp")
    res = torchrun("train", *TRAIN, "-o", tmp / "ddp.safetensors", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    single = run_cli("train", *TRAIN, "-o", tmp / "single.safetensors")
    assert single.exit_code == 0, single.output
    return tmp, res


def test_rank0_writes_one_checkpoint_that_loads_in_a_fresh_process(ddp_run):
    import json

    from prunecli.io import checkpoint as ckpt

    tmp, res = ddp_run
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("ddp")) == ["ddp.safetensors", "ddp.state.pt"]
    result = json.loads(res.stdout)  # one JSON document: rank 1 printed nothing
    assert result["epoch"] == 3
    assert res.stderr.count("epoch   3/3") == 1  # logs from rank 0 only
    header = ckpt.load(tmp / "ddp.safetensors").header
    options = header.lineage[-1].options
    assert (options["world_size"], options["global_batch"], options["batch_per_rank"]) == (2, 20, 10)
    assert "train_loss" in header.metrics and header.metrics["epoch"] == 3
    expected, fresh = reload_in_fresh_process(tmp / "ddp.safetensors", tmp)
    assert torch.allclose(expected, fresh, atol=1e-6)


def test_two_ranks_train_the_weights_of_one_process_with_the_same_global_batch(ddp_run):
    tmp, _ = ddp_run
    ddp, single = weights(tmp / "ddp.safetensors"), weights(tmp / "single.safetensors")
    moved = max_diff(single, weights_at_init(tmp))
    assert moved > 1e-2  # the runs did train (90 steps), so agreeing below means something
    assert max_diff(ddp, single) < WEIGHT_TOL


def weights_at_init(tmp) -> dict:
    path = tmp / "init.safetensors"
    if not path.exists():
        assert run_cli("train", *TRAIN[:6], "--epochs", "0", "--device", "cpu", "-o", path).exit_code == 0
    return weights(path)


def test_distributed_evaluate_counts_every_sample_once_and_equals_one_process(ddp_run):
    import json

    tmp, _ = ddp_run
    args = ["evaluate", tmp / "single.safetensors", "--data", DATA, "-b", "8", "--device", "cpu", "--json"]
    res = torchrun(*args)  # 33 val samples in global batches of 8: slices 4+4 ... and the last 1+0
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = json.loads(res.stdout)
    single = run_cli(*args)
    one = json.loads(single.stdout)
    assert ddp["samples"] == one["samples"] == 33, (ddp, one)
    assert (ddp["top1"], ddp["top5"]) == (one["top1"], one["top5"]), (ddp, one)
    # a sample's logits computed in a batch of 4 (a rank's slice) or 8 may differ in the last float
    # bits (the kernels depend on the batch size), and float32 sums add in another order
    assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-5), (ddp, one)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own, so a
    process-group kill would miss them; a batch scheduler kills them all, as this does)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_kill_9_of_the_whole_job_then_resume_equals_the_uninterrupted_run(ddp_run, tmp_path):
    ref, _ = ddp_run
    out = tmp_path / "killed.safetensors"
    job = torchrun("train", *TRAIN, "-o", out, wait=False)
    state = tmp_path / "killed.state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in [job.pid, *descendants(job.pid)]:  # the launcher and both ranks (own sessions), mid-epoch 2
        os.kill(pid, signal.SIGKILL)
    job.communicate()
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] < 3, "the job finished before it could be killed"
    assert len(saved["rng_ranks"]) == 2
    res = torchrun("train", *TRAIN, "-o", out, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming at epoch {saved['epoch'] + 1}/3" in res.stderr
    assert max_diff(weights(out), weights(ref / "ddp.safetensors")) == 0.0


@pytest.mark.slow  # 13 s; the default suite checks the other ranks' side in-process (next test)
def test_one_shot_commands_run_on_rank_0_only(tmp_path):
    import json

    base = untrained("resnet_tiny", tmp_path / "base.safetensors")
    out = tmp_path / "p.safetensors"
    res = torchrun("prune", base, "--method", "l1", "--ratio", "0.5", "-o", out, "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["output"] == str(out)  # one result: rank 1 exited without a word
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("p.")) == [
        "p.flops.json", "p.masks.json", "p.safetensors"]


def test_other_ranks_exit_at_once_for_one_shot_commands(monkeypatch, tmp_path):
    from prunecli.cli._output import err

    monkeypatch.setattr(err, "quiet", err.quiet)  # main() silences rank 1: undone after the test
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for args in (["analyze", tmp_path / "nope.safetensors"], ["profile", tmp_path / "nope.safetensors"],
                 ["doctor", tmp_path / "nope.safetensors"], ["info", tmp_path / "nope.safetensors"],
                 ["prune", tmp_path / "nope.safetensors", "--ratio", "0.5", "-o", tmp_path / "o.safetensors"]):
        assert run_main(*args) == 0, args  # rank 1 neither reads the input nor writes
    assert not (tmp_path / "o.safetensors").exists()


def test_a_global_batch_that_does_not_divide_is_one_error_line(monkeypatch, tmp_path, capfd):
    """Checked before the process group starts, from torchrun's variables alone (rank 0 says it)."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for cmd in (["train", "--model", MODEL], ["finetune", tmp_path / "any.safetensors"]):
        code = run_main(*cmd, "--data", DATA, "--epochs", "1", "-b", "15", "--device", "cpu",
                        "-o", tmp_path / "o.safetensors")
        assert code == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == ["error: --batch-size 15 is the global batch and must divide by the 2 processes (torchrun): "
                     "try 14"] * 2
    assert not (tmp_path / "o.safetensors").exists()


# ------------------------------------------------------------- loaders: a rank's slice of the global batch


def _ranks(make, world=2, epoch=2):
    parts = []
    for rank in range(world):
        loader = make().shard(rank, world)
        loader.set_epoch(epoch)
        parts.append([(x, y, loader.batch_weight) for x, y in loader])
    return parts


def _one(make, epoch=2):
    loader = make()
    loader.set_epoch(epoch)
    return list(loader)


def _check_slices(make, train: bool):
    """Rank 0's slice followed by rank 1's is the one-process batch, image for image."""
    full, (r0, r1) = _one(make), _ranks(make)
    assert len(r0) == len(make().shard(0, 2)) and len(r1) == len(make().shard(1, 2))
    if train:
        assert len(r0) == len(r1)  # every rank takes part in every step
    empty = (torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.0)
    for b, (x, y) in enumerate(full[: len(r0)]):
        x1, y1, w1 = r1[b] if b < len(r1) else empty  # evaluation: a last batch of 1 leaves rank 1 nothing
        assert torch.equal(torch.cat([r0[b][0], *([x1] if len(y1) else [])]), x)
        assert torch.equal(torch.cat([r0[b][1], y1]), y)
        n0, n1 = len(r0[b][1]), len(y1)
        if train:  # DDP averages the ranks' gradients: weights n_r·world/N make that the batch's mean
            assert (r0[b][2], w1) == pytest.approx((2 * n0 / (n0 + n1), 2 * n1 / (n0 + n1)))
    return full, r0


def test_in_memory_loader_slices_keep_the_one_process_samples_and_augmentation():
    from prunecli.data import build_data

    ds = build_data("digits")  # random crop + flip
    full, r0 = _check_slices(lambda: ds.loader("train", 64, train=True, seed=3), train=True)
    assert len(full) == len(r0)  # 1437 = 22·64 + 29: the last batch splits 15 + 14
    assert not torch.equal(_one(lambda: ds.loader("train", 64, train=True, seed=3), epoch=3)[0][0], full[0][0])
    full, r0 = _check_slices(lambda: ds.loader("val", 64), train=False)


def test_a_last_training_batch_smaller_than_the_world_is_dropped_evaluation_keeps_it():
    from prunecli.data import build_data

    ds = build_data("synthetic:n=41,val=41,classes=4,seed=1")
    assert len(ds.loader("train", 20, train=True).shard(0, 2)) == 2  # 20 + 20 (+ 1 dropped)
    assert [len(y) for _, y in ds.loader("val", 20).shard(0, 2)] == [10, 10, 1]
    assert [len(y) for _, y in ds.loader("val", 20).shard(1, 2)] == [10, 10]


def test_image_folder_slices_keep_the_one_process_samples_and_augmentation(tmp_path):
    from prunecli.data import build_data
    from tests.unit.test_data import write_folder

    write_folder(tmp_path, classes=("a", "b", "c"), train_n=5, val_n=3)
    ds = build_data(f"imagefolder:{tmp_path}?size=16")
    full, r0 = _check_slices(lambda: ds.loader("train", 4, train=True, seed=1), train=True)  # 15 = 3·4 + 3
    _check_slices(lambda: ds.loader("val", 4), train=False)
    workers = _ranks(lambda: ds.loader("train", 4, train=True, seed=1, workers=1))[0]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(workers, r0, strict=True))  # worker processes: same


def test_mri_loader_slices_keep_the_one_process_samples():
    from prunecli.data import build_data

    ds = build_data("phantom:n=9,val=5,size=16,coils=2")
    _check_slices(lambda: ds.loader("train", 4, train=True, seed=1), train=True)


# ------------------------------------------------------------- --repeated-aug (timm's RepeatAugSampler)


def test_repeated_aug_is_timms_sampler_with_distinct_augmentations_of_each_copy():
    from timm.data.distributed_sampler import RepeatAugSampler

    from prunecli.data import build_data
    from prunecli.data.shard import mix

    ds = build_data("digits")
    n = len(ds.loader("train", 64).labels)
    for world in (1, 2):
        for rank in range(world):
            loader = ds.loader("train", 64, train=True, seed=3).shard(rank, world, repeated=True)
            loader.set_epoch(1)
            ys = torch.cat([y for _, y in loader])
            sampler = RepeatAugSampler(range(n), num_replicas=world, rank=rank, num_repeats=3)
            sampler.set_epoch(mix(3, 1))
            assert ys.tolist() == ds.loader("train", n).labels[list(sampler)].tolist()
    # one process: the 3 copies of a sample sit side by side and are augmented differently
    loader = ds.loader("train", 64, train=True, seed=3).shard(0, 1, repeated=True)
    x, _ = next(iter(loader))
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])
    again = ds.loader("train", 64, train=True, seed=3).shard(0, 1, repeated=True)
    assert torch.equal(next(iter(again))[0], x)  # seeded by (seed, epoch): resume is exact


def test_repeated_aug_trains_in_one_process_and_is_recorded(tmp_path):
    from prunecli.io import checkpoint as ckpt

    out = tmp_path / "ras.safetensors"
    r = run_cli("train", "--model", "resnet_tiny", "--data", "synthetic:n=40,val=8,classes=4", "--epochs", "1",
                "-b", "8", "--device", "cpu", "--repeated-aug", "-o", out)
    assert r.exit_code == 0, r.output
    options = ckpt.load(out).header.lineage[-1].options
    assert options["repeated_aug"] is True and options["world_size"] == 1 and options["sync_bn"] is True


# ------------------------------------------------------------- recipes: NPROC


@pytest.mark.parametrize("recipe", ["demo", "gsparsity", "isomorphic", "mbdl", "graphical-similarity",
                                    "mtp-layer-similarity"])
def test_recipes_run_training_through_torchrun_with_nproc_and_unchanged_without(recipe, tmp_path):
    root = Path(__file__).resolve().parents[2] / "recipes" / recipe

    def dry(*extra):
        res = subprocess.run(["make", "-n", "-C", str(root), "SMOKE=1", f"OUT={tmp_path}", "PRUNECLI=prunecli",
                              "PYTHON=python3", *extra], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    one, four = dry(), dry("NPROC=4")
    launcher = "python3 -m torch.distributed.run --standalone --nproc_per_node 4 -m prunecli"
    assert "torch.distributed.run" not in one
    trains = [ln for ln in one.splitlines() if ln.lstrip().startswith(("prunecli train", "prunecli finetune"))]
    assert trains and all(f"{launcher} {ln.strip()[len('prunecli '):]}" in four for ln in trains)
    assert four.replace(f"{launcher} ", "prunecli ") == one  # nothing else changes


def test_syncbatchnorm_swap_shares_parameters_and_statistics_and_restores_the_model():
    """The CUDA path's conversion, checked on CPU: SyncBatchNorm modules in place of BatchNorm share
    their tensors (the optimizer and DDP see the same parameters, the checkpoint the same state),
    `plain()` and `close()` put the originals back."""
    from prunecli.engine.dist import sync_batchnorm
    from prunecli.models import build_model

    model, _, _ = build_model("resnet_tiny", num_classes=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    params = {id(p) for p in model.parameters()}
    wrapped = sync_batchnorm(model)
    synced = [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(synced) == len(bns) > 0 and not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    assert {id(p) for p in model.parameters()} == params
    assert all(s.running_mean is b.running_mean for s, b in zip(synced, bns, strict=True))
    with wrapped.plain():
        assert sum(type(m) is torch.nn.BatchNorm2d for m in model.modules()) == len(bns)
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    synced[0].running_mean.add_(1.0)  # a statistics update through the synced module ...
    wrapped.close()
    assert sum(type(m) is torch.nn.BatchNorm2d for m in model.modules()) == len(bns)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert torch.equal(bns[0].running_mean, before[next(k for k in before if k.endswith("running_mean"))] + 1)


@pytest.mark.slow  # ~15 s: two torchrun jobs
def test_l1_unstructured_fine_tunes_distributed_and_equals_one_process(tmp_path):
    """prune --method l1-unstructured fine-tunes between steps with DDP (its one distributed path
    besides train/finetune/evaluate); on the BN-free ViT it matches the one-process result."""
    base = untrained(MODEL, tmp_path / "base.safetensors", DATA)
    args = ["prune", base, "--method", "l1-unstructured", "--sparsity", "0.5", "--schedule", "iterative",
            "--step", "0.25", "--finetune-epochs", "1", "--data", DATA, "-b", "20", "--lr", "0.01",
            "--device", "cpu"]
    res = torchrun(*args, "-o", tmp_path / "ddp.safetensors")
    assert res.returncode == 0, res.stderr[-3000:]
    assert run_cli(*args, "-o", tmp_path / "one.safetensors").exit_code == 0
    ddp, one = weights(tmp_path / "ddp.safetensors"), weights(tmp_path / "one.safetensors")
    assert max_diff(ddp, one) < WEIGHT_TOL
    assert all(torch.equal(ddp[k] == 0, one[k] == 0) for k in one if one[k].dim() > 1 and (one[k] == 0).any())


def test_grad_accum_ema_and_select_best_under_torchrun_equal_one_process(tmp_path):
    """The step runner (no_sync on the first micro-batch), the EMA and the best-epoch selection
    compose with DDP: 2 ranks write what 1 process writes with the same options."""
    from prunecli.io import checkpoint as ckpt

    opts = [*TRAIN[:6], "--epochs", "2", *TRAIN[8:], "--grad-accum", "2", "--ema", "0.9", "--select", "best"]
    res = torchrun("train", *opts, "-o", tmp_path / "ddp.safetensors")
    assert res.returncode == 0, res.stderr[-3000:]
    single = run_cli("train", *opts, "-o", tmp_path / "single.safetensors")
    assert single.exit_code == 0, single.output
    assert max_diff(weights(tmp_path / "ddp.safetensors"), weights(tmp_path / "single.safetensors")) < WEIGHT_TOL
    a, b = (ckpt.load(tmp_path / f"{n}.safetensors").header.metrics for n in ("ddp", "single"))
    assert a["best_epoch"] == b["best_epoch"] and a["last_epoch"] == b["last_epoch"] == 2
    assert abs(a["best_val_top1"] - b["best_val_top1"]) < 1e-9
    options = ckpt.load(tmp_path / "ddp.safetensors").header.lineage[-1].options
    assert (options["world_size"], options["grad_accum"], options["ema"], options["amp"]) == (2, 2, 0.9, "off")
