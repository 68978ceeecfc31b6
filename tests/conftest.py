"""Shared fixtures: a CLI runner (in-process and real subprocess) and tiny checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

SYNTH = "synthetic:n=96,val=48,classes=4,seed=1"
TINY_DATA = "synthetic:n=8,val=4,classes=4"


def run_cli(*args: str):
    """Run the app in-process (fast); UserErrors surface as `result.exception`."""
    from prunecli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def untrained(model: str, path: Path, data: str = TINY_DATA) -> Path:
    """`prunecli train --epochs 0`: `model` at its seeded initialisation, as a checkpoint at `path`."""
    r = run_cli("train", "--model", model, "--data", data, "--epochs", "0", "--device", "cpu", "-o", path)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return path


def pruned_json(base: Path, out: Path, *args: str) -> dict:
    """`prunecli prune BASE ARGS -o OUT --json` (it must succeed): the JSON result."""
    import json

    r = run_cli("prune", base, *args, "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    return json.loads(r.stdout)


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


def reload_in_fresh_process(path: Path, tmp: Path, batch: int = 2):
    """(outputs in this process, outputs of a fresh process loading `path`) on the same input."""
    import torch
    from safetensors.torch import load_file

    from prunecli.io import checkpoint as ckpt

    loaded = ckpt.load(path)
    shape = loaded.header.input_shape
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = loaded.model(x)
    script = (
        "import sys, torch; from prunecli.io import checkpoint as c; from safetensors.torch import save_file;"
        "m=c.load(sys.argv[1]).model; s=m and c.read_header(open(sys.argv[1],'rb').read()).input_shape;"
        f"x=torch.randn({batch},*s,generator=torch.Generator().manual_seed(0));"
        "save_file({'y': m(x).detach().contiguous()}, sys.argv[2])"
    )
    res = subprocess.run([sys.executable, "-c", script, str(path), str(tmp / "fresh.safetensors")],
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    return expected, load_file(tmp / "fresh.safetensors")["y"]
