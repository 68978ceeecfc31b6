"""Shared helpers for the benchmarks: options, interleaved timing, tables and result files.

Every benchmark compares prunecli with a baseline *side by side in one run*, alternating the
order of the two sides each round (A B, B A, ...) and reporting medians and ratios, because
the machines we run on are shared and absolute timings drift with other people's load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parse_args(description: str) -> argparse.Namespace:
    """`--quick` (fewer repeats) and `--threads N` (torch/OpenMP threads on both sides)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (well under a minute)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (default: torch's default, all cores)")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    return args


def set_torch_threads(threads: int | None) -> int:
    """Apply `--threads` in this process too; returns the count actually in use."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def prunecli_cmd() -> list[str]:
    """The installed console script next to this interpreter, else `python -m prunecli`."""
    script = Path(sys.executable).with_name("prunecli")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prunecli"]


def run_checked(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, failing loudly with its stderr: a failed run must not be timed as fast."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc


def wall_time(cmd: list[str]) -> float:
    """Seconds from spawn to exit of a whole process (so its imports are counted)."""
    start = time.perf_counter()
    run_checked(cmd)
    return time.perf_counter() - start


def interleave(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each side once per round, reversing the order every other round (ABBA), so slow
    drifts in machine load hit both sides alike. Each callable returns its own measurement."""
    names = list(sides)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(sides[name]())
    return out


def pair_ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios: rounds ran back to back, so each pair saw about the same load."""
    return [a / b for a, b in zip(num, den, strict=True)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_info(torch_threads: int | None = None) -> dict:
    """What a reader needs to judge the numbers: cores, versions, threads, date."""
    info = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch_threads if torch_threads is not None else torch.get_num_threads()
    except ImportError:  # cli_startup.py stays torch-free in-process; ask a child instead
        info.update(_torch_facts())
    return info


def _torch_facts() -> dict:
    code = "import json, torch; print(json.dumps([torch.__version__, torch.get_num_threads()]))"
    version, threads = json.loads(run_checked([sys.executable, "-c", code]).stdout)
    return {"torch": version, "torch_threads": threads}


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    """A plain fixed-width table (no rich: the benchmarks must not depend on the CLI's output)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
