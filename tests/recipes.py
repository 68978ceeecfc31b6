"""Running a recipe's SMOKE chain and reading its results.md, shared by the recipe tests."""

from __future__ import annotations

import html
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(recipe: str, out: Path, timeout: int = 900) -> str:
    """`make -j2 -C recipes/RECIPE SMOKE=1 OUT=out` with this interpreter's prunecli; returns results.md.

    `-j2`: a recipe's independent targets (schedules, targets, strategies) share the two cores.
    """
    prunecli = shutil.which("prunecli", path=str(Path(sys.executable).parent))
    assert prunecli, "prunecli console script not installed beside this python"
    res = subprocess.run(["make", "-j2", "-C", str(ROOT / "recipes" / recipe), "SMOKE=1", f"OUT={out}",
                          f"PRUNECLI={prunecli}", f"PYTHON={sys.executable}"], capture_output=True, timeout=timeout)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    return (out / "results.md").read_text()


def table_rows(md: str) -> list[dict[str, str]]:
    """The (first) markdown table of results.md as dicts keyed by its header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


def is_pct(cell: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}\.\d\d", cell)) and 0 <= float(cell) <= 100


# --- the recipes' results.md is `prunecli report`'s (issue 17) -------------------------------------------
def report_rows(md: str) -> dict[str, dict[str, str]]:
    """The rows of `prunecli report --md`'s table keyed by their setting cell (`<setting>` for a
    setting's final checkpoint, `<setting>/<stem>` for the others, the paper's setting for its rows)."""
    rows = table_rows(md)
    keyed = {r["setting"]: r for r in rows}
    assert len(keyed) == len(rows), "a setting appears twice"
    return keyed


def seeds_cell(values: list[float]) -> str:
    """How the report prints an accuracy over seeds: mean ± sample std (one seed: the value)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def evaluated(out: Path, setting: str, stem: str, seeds: list[int], metric: str = "top1") -> list[float]:
    """`metric` of `<stem>.eval.json` in each seed folder of a setting."""
    return [json.loads((out / setting / f"seed{s}" / f"{stem}.eval.json").read_text())[metric] for s in seeds]


def check_seed_row(rows: dict[str, dict[str, str]], out: Path, setting: str, stem: str, seeds: list[int],
                   key: str | None = None, metric: str = "top1") -> dict[str, str]:
    """The row of a setting (or `key`) holds len(seeds) runs and the seeds' mean ± std of `evaluate`."""
    row = rows[key or setting]
    assert row["n"] == str(len(seeds)), row
    assert row[metric] == seeds_cell(evaluated(out, setting, stem, seeds, metric)), row
    assert sorted(p.name for p in (out / setting).iterdir() if p.name.startswith("seed")) == [f"seed{s}" for s in seeds]
    return row


def check_paper_rows(rows: dict[str, dict[str, str]], recipe: str, metric: str = "top1") -> int:
    """Every row of the recipe's paper.json is in the table with its number (none matched a smoke run:
    n = 0); returns how many there are."""
    paper = json.loads((ROOT / "recipes" / recipe / "paper.json").read_text())
    for p in paper["rows"]:
        row = rows[p["setting"]]
        assert row["n"] == "0" and row["lineage"] == "(paper only)", row
        assert row[f"paper {metric}"] == (f"{p[metric]:.2f}" if p.get(metric) is not None else "—"), row
    return len(paper["rows"])


def check_report_files(out: Path, rows: dict[str, dict[str, str]]) -> None:
    """pareto.png is a PNG; report.html is one offline page with the plots embedded and every row."""
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 and "http://" not in page and "https://" not in page
    assert all(f"<td>{html.escape(setting)}</td>" in page for setting in rows)
