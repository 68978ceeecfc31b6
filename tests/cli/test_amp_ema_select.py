"""--amp, --channels-last, --compile, --grad-accum, --ema and --select best, through the CLI on CPU."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import SYNTH, run_cli, run_main

BASE = ["--data", SYNTH, "-b", "32", "--device", "cpu"]
TINY = ["train", "--model", "resnet_tiny", *BASE]


def _train(path, *args):
    r = run_cli(*args, "-o", path, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return path


def _load(path):
    from prunecli.io import checkpoint as ckpt

    return ckpt.load(path)


def _weights(path) -> dict[str, torch.Tensor]:
    return _load(path).model.state_dict()


def _state(path) -> dict:
    return torch.load(path.with_suffix(".state.pt"), weights_only=True)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


def test_bf16_on_cpu_trains_and_records_its_mode(tmp_path):
    """bf16 autocast is really on (weights differ from fp32, a little); auto on CPU is off = fp32."""
    bf16 = _train(tmp_path / "bf16.safetensors", *TINY, "--epochs", "1", "--amp", "bf16")
    auto = _train(tmp_path / "auto.safetensors", *TINY, "--epochs", "1")
    off = _train(tmp_path / "off.safetensors", *TINY, "--epochs", "1", "--amp", "off")
    assert _load(bf16).header.lineage[-1].options["amp"] == "bf16"
    assert _load(auto).header.lineage[-1].options["amp"] == "off"  # CPU default unchanged: fp32
    assert _equal(_weights(auto), _weights(off))
    w_bf16, w_off = _weights(bf16), _weights(off)
    assert all(v.dtype == torch.float32 for v in w_bf16.values() if v.is_floating_point())  # fp32 master weights
    diff = _max_diff(w_bf16, w_off)
    assert 0 < diff < 0.05, diff


def test_channels_last_equals_contiguous(tmp_path):
    a = _weights(_train(tmp_path / "cl.safetensors", *TINY, "--epochs", "1", "--channels-last"))
    b = _weights(_train(tmp_path / "nchw.safetensors", *TINY, "--epochs", "1"))
    assert _max_diff(a, b) < 1e-4


def test_grad_accum_equals_the_full_batch(tmp_path):
    """No BN, no dropout (a tiny ViT, LayerNorm per sample): 2 micro-batches of 16 = one batch of 32.

    96 samples / 32 = 3 steps per epoch; also a ragged last batch (-b 40: 40, 40, 16) split in two."""
    vit = ["train", "--model", "vit_tiny_test", "--data", SYNTH, "--device", "cpu", "--epochs", "1", "--lr", "0.05"]
    for batch in ("32", "40"):
        one = _weights(_train(tmp_path / f"a1_{batch}.safetensors", *vit, "-b", batch))
        two = _weights(_train(tmp_path / f"a2_{batch}.safetensors", *vit, "-b", batch, "--grad-accum", "2"))
        assert not _equal(one, _weights(_train(tmp_path / "half.safetensors", *vit, "-b", "16")))
        assert _max_diff(one, two) < 2e-5, (batch, _max_diff(one, two))


def test_ema_is_validated_saved_and_resumes_exactly(tmp_path):
    full = _train(tmp_path / "ema.safetensors", *TINY, "--epochs", "3", "--ema", "0.7")
    state = _state(full)
    saved = _weights(full)
    assert _equal(saved, state["ema"])  # the checkpoint holds the EMA weights
    raw = state["model"]
    assert _max_diff(saved, raw) > 1e-3  # which differ from the raw ones
    # the header's val numbers are those of the saved (EMA) weights
    r = run_cli("evaluate", full, "--data", SYNTH, "--device", "cpu", "--json")
    import json

    assert json.loads(r.stdout)["top1"] == pytest.approx(_load(full).header.metrics["val_top1"])
    # interrupted after 1 epoch, resumed: equal to the uninterrupted run (EMA and raw)
    part = tmp_path / "part.safetensors"
    _train(part, *TINY, "--epochs", "3", "--ema", "0.7", "--stop-after", "1")
    _train(part, *TINY, "--epochs", "3", "--ema", "0.7", "--resume")
    assert _equal(_weights(part), saved)
    assert _equal(_state(part)["model"], raw)


def test_select_best_keeps_the_best_epoch_and_records_both(tmp_path):
    """Constant LR: the best epoch's weights equal a run of exactly that many epochs."""
    args = [*TINY, "--epochs", "4", "--schedule", "constant", "--lr", "0.5"]
    best = _train(tmp_path / "best.safetensors", *args, "--select", "best")
    last = _train(tmp_path / "last.safetensors", *args)
    m, m_last = _load(best).header.metrics, _load(last).header.metrics
    assert m["best_epoch"] == 1 and m["last_epoch"] == 4  # this seed peaks early, then drifts down
    assert m["epoch"] == m["best_epoch"] and m["val_top1"] == m["best_val_top1"] > m["last_val_top1"]
    for key in ("best_epoch", "best_val_top1", "last_epoch", "last_val_top1"):  # recorded whatever is selected
        assert m_last[key] == m[key]
    assert m_last["val_top1"] == m_last["last_val_top1"]
    short = _train(tmp_path / "short.safetensors", *args[:-4], "--epochs", "1", "--schedule", "constant",
                   "--lr", "0.5")
    assert _equal(_weights(best), _weights(short))
    # resume keeps the best so far (epoch 1), though the epochs after the interruption are worse
    part = tmp_path / "part.safetensors"
    _train(part, *args, "--select", "best", "--stop-after", "2")
    _train(part, *args, "--select", "best", "--resume")
    assert _equal(_weights(part), _weights(best))
    timeless = lambda metrics: {k: v for k, v in metrics.items() if k != "images_per_s"}  # noqa: E731
    assert timeless(_load(part).header.metrics) == timeless(m)


def test_fp16_without_cuda_is_one_error_line(capsys):
    code = run_main(*TINY, "--epochs", "1", "--amp", "fp16", "-o", "/tmp/never.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and "error: --amp fp16 needs a CUDA device" in err and "Traceback" not in err


def _failing_backend(gm, example_inputs):
    raise RuntimeError("forced failure for the test")


def test_compile_failure_is_one_error_line(tmp_path, monkeypatch, capsys):
    from prunecli.engine import amp

    monkeypatch.setattr(amp, "COMPILE_BACKEND", _failing_backend)
    torch._dynamo.reset()
    code = run_main(*TINY, "--epochs", "1", "--compile", "-o", tmp_path / "c.safetensors")
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--compile: torch.compile failed" in lines[0] and "forced failure" in lines[0]
    assert "Traceback" not in err and not (tmp_path / "c.safetensors").exists()


def test_compile_trains_the_same_weights(tmp_path, monkeypatch):
    """torch.compile through dynamo (eager backend: no C++ build on the test machine) = plain training."""
    from prunecli.engine import amp

    monkeypatch.setattr(amp, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    compiled = _train(tmp_path / "c.safetensors", *TINY, "--epochs", "1", "--compile")
    plain = _train(tmp_path / "p.safetensors", *TINY, "--epochs", "1")
    assert _load(compiled).header.lineage[-1].options["compile"] is True
    assert _max_diff(_weights(compiled), _weights(plain)) < 1e-5
    assert not any(k.startswith("_orig_mod") for k in _weights(compiled))


def test_profile_synchronises_cuda_around_every_timed_forward(monkeypatch):
    """On CUDA, kernels run asynchronously: each timed forward sits between a synchronize() and CUDA
    events recorded on the stream, read once the end event completed (the wall-clock timer's
    synchronisation: tests/unit/test_latency_stat.py)."""
    from prunecli.profiling import latency
    from tests.unit.test_latency_stat import FakeCuda

    events = []
    fake = FakeCuda(events)
    for name in ("synchronize", "Event", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    model = torch.nn.Linear(4, 2)
    model.register_forward_hook(lambda *a: events.append("forward"))
    times = latency.time_forward(model, torch.randn(3, 4), "cuda:0", warmup=1, runs=2)
    timed = ["sync", "record 0", "forward", "record 1", "wait 1", "elapsed"]
    assert events == ["forward", "sync", *timed, *timed] and times == [FakeCuda.MS, FakeCuda.MS]


def test_unstructured_finetuning_takes_amp_and_grad_accum(tiny_ckpt, tmp_path):
    """prune --method l1-unstructured fine-tunes through the same loop: bf16 and 2 micro-batches."""
    from safetensors.torch import load_file

    out = tmp_path / "p.safetensors"
    r = run_cli("prune", tiny_ckpt, "--method", "l1-unstructured", "--sparsity", "0.5", "--data", SYNTH,
                "--finetune-epochs", "1", "-b", "32", "--device", "cpu", "--amp", "bf16", "--grad-accum", "2",
                "--channels-last", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    header = _load(out).header
    assert header.lineage[-1].options["amp"] == "bf16" and header.lineage[-1].options["grad_accum"] == 2
    tensors = load_file(out)
    zeros = sum(int((tensors[n] == 0).sum()) for n in header.sparse_params)
    assert zeros / sum(tensors[n].numel() for n in header.sparse_params) == pytest.approx(0.5, abs=1e-3)
