"""`prunecli --help` wall time vs `python -c pass`: the CLI must feel instant.

Every command imports torch inside its body, so `--help` should cost about as much as
starting Python. Target: median `--help` within 0.3 s of median `python -c pass`, and
`--help` importing no torch at all. We also list the slowest imports of `--help`
(`-X importtime`) so a regression points at its cause.
"""

from __future__ import annotations

import sys

from _common import (
    interleave,
    machine_info,
    median,
    pair_ratios,
    parse_args,
    print_table,
    prunecli_cmd,
    run_checked,
    verdict,
    wall_time,
    write_results,
)

TARGET_DELTA_S = 0.3
HEAVY = ("torch", "torch_pruning", "torchvision", "timm", "numpy", "safetensors", "pydantic")
_PROBE = """
import sys
sys.argv = ["prunecli", "--help"]
from prunecli.cli.app import main
try:
    main()
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def heavy_imports() -> list[str]:
    """Heavy modules present in `sys.modules` after a real `--help` run."""
    proc = run_checked([sys.executable, "-c", _PROBE.format(heavy=HEAVY)])
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY="):].split(",") if m]


def slowest_imports(top: int = 6) -> list[list]:
    """Imports made directly by `--help` (depth 1 in `python -X importtime`), by cumulative seconds."""
    proc = run_checked([sys.executable, "-X", "importtime", "-m", "prunecli", "--help"])
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if len(name) - len(name.lstrip()) == 1 and name.strip() not in ("site", "encodings"):
            rows.append([name.strip(), int(cumulative) / 1e6])
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    args = parse_args(__doc__)
    rounds = 5 if args.quick else 15
    help_cmd, pass_cmd = prunecli_cmd() + ["--help"], [sys.executable, "-c", "pass"]
    wall_time(help_cmd)  # warm the page cache, so neither side pays the first read
    times = interleave({"python -c pass": lambda: wall_time(pass_cmd),
                        "prunecli --help": lambda: wall_time(help_cmd)}, rounds)
    base, cli = median(times["python -c pass"]), median(times["prunecli --help"])
    delta, heavy, slow = cli - base, heavy_imports(), slowest_imports()
    ok = delta <= TARGET_DELTA_S and "torch" not in heavy
    print_table(f"CLI start-up ({rounds} interleaved runs, median seconds)", ["command", "median s", "min s"],
                [[name, median(v), min(v)] for name, v in times.items()])
    print_table("result", ["metric", "value"], [
        ["--help minus python -c pass (s)", delta], ["target (s)", f"<= {TARGET_DELTA_S}"],
        ["ratio --help / pass (median of pairs)", median(pair_ratios(times["prunecli --help"],
                                                                     times["python -c pass"]))],
        ["heavy modules imported by --help", ", ".join(heavy) or "none"], ["verdict", verdict(ok)]])
    print_table("slowest direct imports of --help (-X importtime, one run)", ["package", "cumulative s"], slow)
    write_results("cli_startup", {
        "machine": machine_info(), "rounds": rounds, "times_s": times, "median_s": {"pass": base, "help": cli},
        "delta_s": delta, "target_delta_s": TARGET_DELTA_S, "heavy_imports": heavy,
        "torch_imported": "torch" in heavy, "slowest_imports_s": dict((r[0], r[1]) for r in slow),
        "pass": ok})


if __name__ == "__main__":
    main()
