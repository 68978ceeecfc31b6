"""The `make demo` pipeline end to end, with its accuracy claims (minutes: `make test-slow`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_pipeline_reaches_stated_accuracy(tmp_path):
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-C", str(ROOT / "recipes" / "demo"), f"OUT={tmp_path}", f"PRUNECLI={prunecli}",
                          f"PYTHON={sys.executable}"], capture_output=True, timeout=1800)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    base = json.loads((tmp_path / "eval_base.json").read_text())
    ft = json.loads((tmp_path / "eval_finetuned.json").read_text())
    prof = json.loads((tmp_path / "profile.json").read_text())
    assert base["top1"] >= 97.0 and ft["top1"] >= 97.0
    assert 1.9 <= prof["ratios"]["macs"] <= 2.2  # "about half its MACs"
    assert "top-1 accuracy" in (tmp_path / "summary.txt").read_text()


@pytest.mark.slow
def test_demo_ddp_smoke_two_gloo_processes(tmp_path):
    """`make -C recipes/demo ddp-smoke`: torchrun train/evaluate/finetune on 2 CPU processes; the
    2-process and 1-process evaluations and the validation recorded in training agree (~1 min)."""
    import os

    root = ROOT
    res = subprocess.run(["make", "-C", str(root / "recipes" / "demo"), "ddp-smoke", f"OUT={tmp_path}",
                          f"PRUNECLI={sys.executable} -m prunecli", f"PYTHON={sys.executable}"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ddp-smoke: ok" in res.stdout
