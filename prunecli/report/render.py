"""The report as a rich table, markdown, one self-contained HTML page, or JSON.

Every form states its protocol above the numbers: which epoch, where the accuracy was
measured, how many seeds, MACs (not FLOPs), and the device and batch of the latency.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from prunecli.console import human
from prunecli.report.aggregate import SECOND, Row, Stat
from prunecli.report.paper import PaperRow, PaperTable

NONE = "—"


def match(rows: list[Row], paper: PaperTable | None) -> list[tuple[Row | None, PaperRow | None]]:
    """Our rows, each beside its paper row, then the paper rows none of ours matched.

    A paper row's `setting` matches our setting, or its last folders (`resnet56/tau0.8` matches
    `reference/resnet56/tau0.8` and `improved/resnet56/tau0.8`: one paper number beside each mode),
    on the setting's final checkpoint; `setting/stem` names one checkpoint."""
    candidates = list(paper.rows) if paper else []
    used: set[int] = set()
    out: list[tuple[Row | None, PaperRow | None]] = []
    for row in rows:
        names = [f"{row.setting}/{s}" for s in row.stems] + ([row.setting] if row.final else [])
        hit = next((i for i, p in enumerate(candidates)
                    if any(n == p.setting or n.endswith("/" + p.setting) for n in names)), None)
        if hit is not None:
            used.add(hit)
        out.append((row, None if hit is None else candidates[hit]))
    return out + [(None, p) for i, p in enumerate(candidates) if i not in used]


def protocol(rows: list[Row], paper: PaperTable | None) -> str:
    """One line: what the numbers are."""
    if not rows:
        return "no runs found"
    metric = rows[0].facts["metric"]
    sources = sorted({r.facts["acc_source"] for r in rows})
    selects = sorted({r.facts["select"] for r in rows if r.facts["select"]})
    ns = sorted({len(r.runs) for r in rows})
    batch = rows[0].facts.get("batch")
    devices = sorted({r.facts["device"] for r in rows if r.facts.get("device")})
    text = (f"{metric}: {'; '.join(sources)}, weights of the kept epoch (--select {', '.join(selects) or 'last'}); "
            + (f"best / last: the training run's val {metric} at its best / last epoch (checkpoint header); "
               if metric not in SECOND else f"{SECOND[metric]} beside it, same source; ")
            + f"mean ± sample std over n = {', '.join(map(str, ns))} seed(s); MACs per sample (not FLOPs); "
            + (f"latency: median ms at batch {batch} on {', '.join(devices)}" if batch and devices
               else "latency: not measured (no .profile.json)"))
    if paper:
        text += f". Paper: {paper.source}, {paper.section}" + (f" ({paper.data})" if paper.data else "")
    return text


def stat(s: Stat, n: int, kind: str = "acc") -> str:
    if s.mean is None:
        return NONE
    fmt = {"acc": lambda v: f"{v:.2f}", "count": human, "ms": lambda v: f"{v:.3g}", "frac": lambda v: f"{v:.3f}"}[kind]
    spread = s.std is not None and (s.std > 0 or kind == "acc")  # equal counts over seeds: no "± 0"
    text = fmt(s.mean) + (f" ± {fmt(s.std)}" if spread else "")
    return text + (f" (n={s.n})" if s.n != n else "")


def _num(v: float | None, kind: str) -> str:
    return NONE if v is None else stat(Stat(v, None, 1), 1, kind)


def columns(metric: str, paper: PaperTable | None) -> list[str]:
    """Ours, each with the paper's number right after it when a paper is given."""
    pair = (lambda c: [c, f"paper {c}"]) if paper else (lambda c: [c])
    second = [SECOND[metric]] if metric in SECOND else []
    return ["setting", "method", "n", *pair(metric), *second, f"best {metric}", f"last {metric}", *pair("MACs"),
            *pair("params"), *pair("latency ms"), "sparsity", "lineage"]


def cells(row: Row | None, p: PaperRow | None, metric: str, paper: PaperTable | None) -> list[str]:
    if row is not None:
        n, s = len(row.runs), row.stats
        name = row.setting if row.final else f"{row.setting}/{'|'.join(row.stems)}"
        ours = {"setting": name, "method": row.method, "n": str(n), metric: stat(s["acc"], n),
                SECOND.get(metric, ""): stat(s["acc2"], n, "frac"),
                f"best {metric}": stat(s["best"], n), f"last {metric}": stat(s["last"], n),
                "MACs": stat(s["macs"], n, "count"), "params": stat(s["params"], n, "count"),
                "latency ms": stat(s["latency_ms"], n, "ms"), "sparsity": stat(s["sparsity"], n, "frac"),
                "lineage": row.chain}
    else:
        ours = {"setting": p.setting, "method": p.method, "n": "0", "lineage": "(paper only)"}
    if p is not None:
        ours |= {f"paper {metric}": _num(p.value(metric), "acc"), "paper MACs": _num(p.macs, "count"),
                 "paper params": _num(p.params, "count"), "paper latency ms": _num(p.latency_ms, "ms")}
    return [ours.get(c, NONE) for c in columns(metric, paper)]


def table_rows(rows: list[Row], paper: PaperTable | None) -> tuple[list[str], list[list[str]]]:
    metric = rows[0].facts["metric"] if rows else (paper.metric if paper else "top1")
    return columns(metric, paper), [cells(r, p, metric, paper) for r, p in match(rows, paper)]


def rich(rows: list[Row], paper: PaperTable | None, title: str):
    from rich.console import Group
    from rich.text import Text

    from prunecli.console import table

    cols, body = table_rows(rows, paper)
    return Group(Text(protocol(rows, paper), style="dim"), table(title, cols, body, whole=1))


def markdown(rows: list[Row], paper: PaperTable | None, title: str) -> str:
    cols, body = table_rows(rows, paper)

    def line(cs: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cs) + " |"

    return "\n".join([f"# {title}", "", f"Protocol: {protocol(rows, paper)}.", "", line(cols),
                      "|" + "---|" * len(cols), *map(line, body), ""])


def html_page(rows: list[Row], paper: PaperTable | None, title: str, plots: dict[str, bytes]) -> str:
    """One page, no external resource: the table, then each plot as a base64 PNG."""
    cols, body = table_rows(rows, paper)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>\n" for r in body)
    runs = _runs_table(rows)
    imgs = "".join(f'<h2>{html.escape(name)}</h2>\n<img alt="{html.escape(name)}" '
                   f'src="data:image/png;base64,{base64.b64encode(png).decode()}">\n'
                   for name, png in plots.items())
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}img{max-width:100%}"
            "</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>Protocol: {html.escape(protocol(rows, paper))}.</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{trs}</tbody></table>\n{imgs}"
            f"<h2>Runs</h2>\n{runs}</body></html>\n")


def _runs_table(rows: list[Row]) -> str:
    """Every checkpoint behind the rows, with its own numbers (provenance of each mean)."""
    cols = ["setting", "seed", "checkpoint", "accuracy", "split", "best", "last", "MACs", "latency ms"]
    body = []
    for row in rows:
        for run, x in zip(row.runs, row.as_json()["per_run"], strict=True):
            body.append([row.setting, x["seed"], run.path, _num(x["acc"], "acc"), x["split"] or "header val",
                         _num(x["best"], "acc"), _num(x["last"], "acc"), _num(x["macs"], "count"),
                         _num(x["latency_ms"], "ms")])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>\n" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{trs}</tbody></table>\n"


def as_json(rows: list[Row], paper: PaperTable | None, fronts: dict[str, list[Row]]) -> dict[str, Any]:
    return {"protocol": protocol(rows, paper), "rows": [r.as_json() for r in rows],
            "paper": paper.model_dump() if paper else None,
            "matches": [{"ours": r.label if r else None, "paper": p.setting if p else None}
                        for r, p in match(rows, paper)],
            "pareto": {axis: [r.label for r in best] for axis, best in fronts.items()}}
