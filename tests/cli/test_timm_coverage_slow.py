"""The timm coverage sweep (issue 12 item 4): every listed architecture either prunes and
reloads or is refused with one line; no tracebacks, no unloadable files (an hour or more on
2 CPU cores: `make test-slow`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_timm_sweep_has_no_traceback_and_no_unloadable_file(tmp_path):
    jobs = str(max(1, (os.cpu_count() or 1) // 4))
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "timm_coverage.py"), "--jobs", jobs,
                          "--markdown", str(tmp_path / "coverage.md"), "--json", str(tmp_path / "coverage.json")],
                         capture_output=True, text=True, timeout=6 * 3600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "coverage.json").read_text())["rows"]
    bad = [f"{r['model']}: {r['result']} ({r['step']}) {r['reason']}" for r in rows
           if r["result"] in ("traceback", "unloadable")]
    assert not bad, "\n".join(bad)
    assert all(r["result"] in ("prunes+reloads", "refused", "timeout", "not built") for r in rows)
