"""`prunecli report`: a folder of runs → the results table and the Pareto plots (prunecli/report/)."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O

MEASURE = "Measuring what is missing (--measure)"


def report(
    dirs: Annotated[list[str], typer.Argument(help="folders of runs (searched recursively for *.safetensors) or checkpoints", show_default=False)],
    paper: Annotated[str | None, typer.Option("--paper", help="the paper's numbers (paper.json, format in README 'Report'), drawn hollow and listed beside ours")] = None,
    x: Annotated[list[str] | None, typer.Option("--x", help="x axes of the Pareto plots (repeat): macs, latency; default both", **O.choice("--x", "macs", "latency"))] = None,
    plot: Annotated[str | None, typer.Option("--plot", help="write the Pareto plots (one panel per --x) to this PNG")] = None,
    md: Annotated[str | None, typer.Option("--md", help="write the table (ours beside the paper, protocol line above) as markdown")] = None,
    html: Annotated[str | None, typer.Option("--html", help="write one self-contained HTML page: tables and plots embedded, works offline")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="accuracy metric: top1, top5, psnr, ssim (default: paper.json's, else top1 / psnr by task)", **O.choice("--metric", "top1", "top5", "psnr", "ssim"))] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="batch size of the latency column (default: the smallest every profiled run measured)")] = None,
    title: Annotated[str | None, typer.Option("--title", help="title of the table, page and plots (default: the folders)")] = None,
    json: O.Json = False,
    measure: Annotated[bool, typer.Option("--measure", help="evaluate / profile the checkpoints without a .eval.json / .profile.json and keep the results as those sidecars (otherwise nothing is run)", rich_help_panel=MEASURE)] = False,
    data: Annotated[str | None, typer.Option("--data", help="--measure: data spec to evaluate on (default: each checkpoint's recorded one)", rich_help_panel=MEASURE)] = None,
    split: Annotated[str, typer.Option(help="--measure: the split evaluated", rich_help_panel=MEASURE, **O.choice("--split", "train", "val", "test"))] = "test",
    device: Annotated[str, typer.Option("--device", help="--measure: auto, cpu, cuda or cuda:N", rich_help_panel=MEASURE)] = "auto",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="--measure: batch sizes to time (comma-separated)", rich_help_panel=MEASURE)] = "1",
) -> None:
    """Collect every checkpoint under DIRS into one results table and accuracy–MACs–latency Pareto plots.

    Reads only checkpoint headers and the sidecars beside them (never the weights):
    <stem>.eval.json (`evaluate -o`), <stem>.profile.json (`profile -o`), .flops.json and
    .masks.json; other files are ignored, and a file that is not a prunecli checkpoint is
    one warning line. Runs that differ only by seed (runs/<setting>/seed<N>/, or the
    `seed` option in the lineage) form one row: mean ± sample std and n of the accuracy
    (evaluate's, else the header's val; best and last epoch beside it), MACs, params,
    measured latency, sparsity, and the lineage chain.

    Examples:

      prunecli report runs

      prunecli report recipes/graphical-similarity/runs --paper recipes/graphical-similarity/paper.json --x macs --x latency --plot pareto.png --md results.md --html report.html

      prunecli report runs --json | jq '.rows[] | {setting, acc}'

      prunecli report runs --measure --split test --device cuda   (evaluates / profiles what has no sidecar yet)
    """
    from prunecli.cli._output import print_result
    from prunecli.io import atomic
    from prunecli.report import aggregate, collect, pareto, render
    from prunecli.report.paper import load_paper

    for flag, out in (("--plot", plot), ("--md", md), ("--html", html)):
        if out is not None:
            atomic.check_output(out, option=flag)
    table = load_paper(paper) if paper else None
    runs = collect.find(dirs)
    if measure:
        _measure(runs, data, split, device, batch_sizes)
    rows = aggregate.group(runs, metric or (table.metric if table else None), batch)
    axes = _axes(rows, list(dict.fromkeys(x or ["macs", "latency"])), plot or html)
    fronts = {axis: pareto.front_of(rows, axis) for axis in axes}
    name = title or "results: " + ", ".join(dirs)
    metric_name = rows[0].facts["metric"] if rows else (table.metric if table else "top1")
    pngs = pareto.draw(rows, axes, table, metric_name, name) if (plot or html) and axes else {}
    if plot and pngs:
        atomic.write_bytes(plot, pngs["all"])
    if md:
        atomic.write_bytes(md, render.markdown(rows, table, name).encode())
    if html:
        plots = {f"{metric_name} vs {axis}": pngs[axis] for axis in axes}
        atomic.write_bytes(html, render.html_page(rows, table, name, plots).encode())
    print_result(render.as_json(rows, table, fronts), json, lambda: render.rich(rows, table, name))


def _measure(runs, data: str | None, split: str, device: str, batch_sizes: str) -> None:
    from prunecli.profiling.report import parse_batch_sizes
    from prunecli.report import measure

    sizes = parse_batch_sizes(batch_sizes)
    measure.fill(runs, data=data, split=split, device=device, batch_size=256, batch_sizes=sizes, timing_runs=20,
                 warmup=5)


def _axes(rows, wanted: list[str], drawing) -> list[str]:
    """The wanted axes that have numbers; a missing one is a warning when something is drawn."""
    from prunecli.report import pareto
    from prunecli.report.collect import warn

    keep = [a for a in wanted if pareto.plotted(rows, a)]
    if drawing:
        for axis in wanted:
            if axis not in keep:
                warn(f"no run has both accuracy and {axis} "
                     f"({'<stem>.profile.json from `profile -o`' if axis == 'latency' else '.flops.json or .profile.json'}): "
                     f"the {axis} plot is left out")
    return keep
