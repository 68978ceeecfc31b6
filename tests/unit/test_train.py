"""Training: resume after an interruption equals an uninterrupted run; the schedule is right."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from prunecli.engine.config import TrainConfig
from prunecli.engine.optim import make_optimizer, make_scheduler
from tests.conftest import SYNTH, run_cli

ARGS = ["--model", "resnet_tiny", "--data", SYNTH, "--epochs", "3", "--batch-size", "32", "--device", "cpu",
        "--lr", "0.05", "--seed", "3"]


def test_resume_gives_same_weights_as_uninterrupted(tmp_path):
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    assert run_cli("train", *ARGS, "-o", full).exit_code == 0
    r = run_cli("train", *ARGS, "--stop-after", "1", "-o", part)
    assert r.exit_code == 0, r.output
    assert load_file(part).keys() == load_file(full).keys()
    first = load_file(part)
    assert any(not torch.equal(first[k], v) for k, v in load_file(full).items())  # really interrupted
    r = run_cli("train", *ARGS, "--resume", "-o", part)
    assert r.exit_code == 0, r.output + repr(r.exception)
    a, b = load_file(full), load_file(part)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_changed_options(tmp_path):
    out = tmp_path / "x.safetensors"
    assert run_cli("train", *ARGS, "--stop-after", "1", "-o", out).exit_code == 0
    r = run_cli("train", *ARGS[:-2], "--seed", "4", "--resume", "-o", out)
    assert "different training options" in str(r.exception)


def test_cosine_schedule_with_warmup():
    cfg = TrainConfig(epochs=4, lr=0.1, warmup_epochs=1)
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert abs(lrs[0] - 0.01) < 1e-9 and abs(lrs[9] - 0.1) < 1e-9  # linear warm-up over epoch 1
    assert abs(lrs[10] - 0.1) < 1e-9 and lrs[-1] < 0.001  # then cosine to ~0
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:]))


def test_step_schedule():
    cfg = TrainConfig(epochs=6, lr=0.1, schedule="step", step_size=2, gamma=0.1)
    opt = make_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(30):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [round(lrs[i], 6) for i in (0, 9, 10, 19, 20, 29)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_milestone_schedule_and_adam():
    cfg = TrainConfig(epochs=6, lr=1e-3, optimizer="adam", schedule="step", milestones=[2, 5], gamma=0.1)
    opt = make_optimizer(torch.nn.Linear(2, 2), cfg)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    sched = make_scheduler(opt, cfg, steps_per_epoch=1)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [round(x, 9) for x in lrs] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5]


def test_bad_milestones_are_one_line_errors(capsys):
    from tests.conftest import run_main

    code = run_main("train", "--model", "resnet_tiny", "--data", SYNTH, "--milestones", "120,80", "-o", "x.safetensors")
    assert code == 2 and "--milestones" in capsys.readouterr().err


def test_resume_accepts_a_state_written_before_newer_options(tmp_path):
    """A state saved by an older prunecli lacks options added since (e.g. nesterov): at their
    defaults, which are the older behaviour, it resumes; a non-default value is still refused."""
    out = tmp_path / "x.safetensors"
    assert run_cli("train", *ARGS, "--stop-after", "1", "-o", out).exit_code == 0
    state_path = tmp_path / "x.state.pt"
    state = torch.load(state_path, weights_only=True)
    del state["config"]["nesterov"]
    torch.save(state, state_path)
    r = run_cli("train", *ARGS, "--resume", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert run_cli("train", *ARGS, "--stop-after", "1", "-o", out).exit_code == 0
    r = run_cli("train", *ARGS, "--no-nesterov", "--resume", "-o", out)
    assert "different training options" in str(r.exception)
