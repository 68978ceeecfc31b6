"""Shared fixtures: a CLI runner (in-process and real subprocess) and tiny checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

SYNTH = "synthetic:n=96,val=48,classes=4,seed=1"


def run_cli(*args: str):
    """Run the app in-process (fast); UserErrors surface as `result.exception`."""
    from prunecli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def run_main(*args: str) -> int:
    """Run the console-script `main()` in-process; returns its exit code."""
    from prunecli.cli.app import main

    old = sys.argv
    sys.argv = ["prunecli", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = old


def run_proc(*args: str, input: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point in a fresh process (exit codes, pipes, fresh imports)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "prunecli", *map(str, args)], input=input,
                          capture_output=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A resnet_tiny trained for one epoch on synthetic data (4 classes)."""
    out = tmp_path_factory.mktemp("tiny") / "base.safetensors"
    result = run_cli("train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "1",
                     "--batch-size", "32", "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out
