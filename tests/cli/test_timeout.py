"""`prune --timeout`: graph building and pruning are bounded, and a model Torch-Pruning would
mis-read (a channel slice feeding a concat) is refused in seconds (issue 12 item 3; that refusal
is tested in test_timm_concat.py, ReXNet and DPN now prune)."""

from __future__ import annotations

import signal
import time

import torch

from tests.conftest import run_main, run_proc


def _written(tmp_path) -> list:
    return sorted(p.name for p in tmp_path.iterdir())


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_tiny_timeout_on_a_real_prune_is_one_line_exit_2_nothing_written(tiny_ckpt, tmp_path):
    out = tmp_path / "p.safetensors"
    proc = run_proc("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "--timeout", "0.001", "-o", out)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    (line,) = _error_lines(stderr)
    assert "building the dependency graph" in line and "--timeout 0.001 s" in line
    assert "--ignore GLOB" in line
    assert _written(tmp_path) == []


def _slow(monkeypatch, target, attr, seconds, at_call=1):
    """Make the `at_call`-th call of `target.attr` sleep first (interruptible: the alarm must cut it short)."""
    original, calls = getattr(target, attr), []

    def slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, attr, slow)


def test_slow_pruning_step_is_interrupted_by_the_alarm(tiny_ckpt, tmp_path, monkeypatch, capsys):
    from prunecli.pruning import structured

    _slow(monkeypatch, structured, "_cut_layers", 30)
    previous = signal.signal(signal.SIGALRM, signal.SIG_IGN)
    try:
        start = time.monotonic()
        code = run_main("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "--timeout", "2",
                        "-o", tmp_path / "p.safetensors")
        elapsed = time.monotonic() - start
        assert signal.getsignal(signal.SIGALRM) is signal.SIG_IGN  # the caller's handler is back
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith("error: pruning took longer than --timeout 2 s")
    assert elapsed < 20  # cut short, not after the 30 s step
    assert _written(tmp_path) == []


def test_mac_search_trial_is_named(tiny_ckpt, tmp_path, monkeypatch, capsys):
    from prunecli.pruning import structured

    _slow(monkeypatch, structured, "_prune_width_depth", 30, at_call=2)
    code = run_main("prune", tiny_ckpt, "--method", "l1", "--target-macs", "0.5x", "--timeout", "3",
                    "-o", tmp_path / "p.safetensors")
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith("error: MAC search trial 2 (ratio ")
    assert _written(tmp_path) == []


def test_without_sigalrm_the_limit_is_checked_between_phases(tiny_ckpt, tmp_path, monkeypatch, capsys):
    from prunecli.pruning import deadline, structured

    monkeypatch.setattr(deadline, "_alarm_usable", lambda: False)
    _slow(monkeypatch, structured, "_cut_layers", 4)
    code = run_main("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "--timeout", "3",
                    "-o", tmp_path / "p.safetensors")
    assert code == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert line.startswith("error: pruning took longer than --timeout 3 s")
    assert _written(tmp_path) == []


def test_progress_lines_name_the_phases_and_no_limit_with_zero(tiny_ckpt, tmp_path):
    proc = run_proc("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "--timeout", "0",
                    "-o", tmp_path / "p.safetensors")
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    for name in ("checking the dependency graph", "building the dependency graph", "pruning"):
        assert any(line.strip().startswith(f"{name}: ") and line.rstrip().endswith(" s")
                   for line in stderr.splitlines()), stderr
    assert run_main("prune", tiny_ckpt, "--ratio", "0.3", "--timeout", "-1", "-o", tmp_path / "q.safetensors") == 2


def _l1(seed=0):
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


def test_plain_concat_and_post_concat_slice_are_not_refused():
    """DenseNet-style concats and GhostNet's `cat(...)[:, :out]` prune as before."""
    import timm

    from prunecli.pruning.structured import PrunePlan, prune

    torch.manual_seed(0)
    ghost = timm.create_model("ghostnet_050", num_classes=10).eval()
    _, outcome = prune(ghost, (3, 32, 32), _l1, PrunePlan(ratio=0.2), ("classifier",))
    assert outcome.after.macs < outcome.before.macs
