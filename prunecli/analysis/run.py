"""`prunecli analyze` behind the CLI: validate options, load, dispatch, wrap and write the report.

Dispatch is a table from method name to the module implementing it, so a new analysis is
one file plus one row here (and its `Method` entry in `prunecli.methods`). The module is
imported only when used: validation errors cost no torch import.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from pathlib import Path

from prunecli.errors import UserError

FORMAT = "prunecli-analysis"
VERSION = 1
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Analysis:
    """Where an analysis lives and what it needs from the command line."""

    module: str
    """Module exposing `analyze(loaded, opts) -> dict` and `summary(report) -> renderable`."""
    needs_data: bool = False
    options: tuple[str, ...] = ()
    """The `AnalysisOptions` fields it uses (recorded in the report)."""
    plot: str = ""
    """What `--plot` draws, in words; empty: the analysis draws nothing and refuses `--plot`."""
    figure: str | None = None
    """A function of prunecli/analysis/plots.py drawing the figure from the finished report
    (None: the analysis module draws its own inside `analyze`)."""


ANALYSES: dict[str, Analysis] = {
    "magnitude": Analysis("prunecli.analysis.magnitude", options=("plot",),
                          plot="sorted filter L1 norms per layer", figure="magnitude"),
    "sensitivity": Analysis(
        "prunecli.analysis.sensitivity", needs_data=True,
        options=("data", "ratios", "max_batches", "batch_size", "device", "tolerance", "plot"),
        plot="top-1 accuracy vs filters pruned away, one curve per layer", figure="sensitivity",
    ),
    "similarity": Analysis(
        "prunecli.analysis.similarity", needs_data=True,
        options=("data", "samples", "thresholds", "batch_size", "device", "plot", "seed", "selection"),
        plot="kept filters and MACs vs τ",
    ),
    "cka": Analysis(
        "prunecli.analysis.cka", needs_data=True,
        options=("data", "compare", "layers", "batch_size", "max_batches", "device", "plot", "cka_modules"),
        plot="CKA heatmap",
    ),
}


@dataclass(frozen=True)
class AnalysisOptions:
    """Options shared by all analyses; each reads the ones it needs."""

    data: str | None = None
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    max_batches: int | None = None
    batch_size: int = 256
    device: str = "auto"
    tolerance: float = 1.0
    """Accuracy drop (top-1 points) beyond which a layer counts as sensitive at a ratio."""
    samples: int = 100
    thresholds: tuple[float, ...] = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
    plot: str | None = None
    compare: str | None = None
    """A second checkpoint whose layers are compared with the analysed one's (cka)."""
    layers: tuple[str, ...] = ()
    """fnmatch patterns on module names (cka; empty: every Conv2d/Linear)."""
    seed: int = 0
    """Seed of the random draw of training images (similarity's --samples)."""
    cka_modules: str = "layers"
    """cka: `layers` (Conv2d/Linear or `layers`) or `all` (every named_modules() entry, torch_cka's default)."""
    selection: str = "reference"
    """Similarity tie-break rule: "reference" (the paper's code) or "strength" (ours)."""


def parse_ratios(text: str, flag: str = "--ratios") -> tuple[float, ...]:
    """`0.1,0.3,0.5` → (0.1, 0.3, 0.5), sorted and deduplicated; each must lie in (0, 1)."""
    values = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"{flag}: {item!r} is not a number (expected e.g. 0.1,0.3,0.5)") from None
        if not 0 < value < 1:
            raise UserError(f"{flag}: each value must be in (0, 1), got {item}")
        values.append(value)
    if not values:
        raise UserError(f"{flag} is empty (expected e.g. 0.1,0.3,0.5)")
    return tuple(sorted(set(values)))


def analysis_for(method_name: str) -> Analysis:
    """The analysis named `method_name`; an unknown name or a pruning method is one clear line."""
    from prunecli.methods import get_method

    method = get_method(method_name)
    analysis = ANALYSES.get(method.name)
    if analysis is None:
        raise UserError(f"method {method.name!r} is a {method.kind} method with no analysis; "
                        "use it with `prunecli prune`")
    return analysis


def resolve(method_name: str, opts: AnalysisOptions) -> Analysis:
    """The analysis for `method_name`, after the checks that need no torch (fail fast)."""
    analysis = analysis_for(method_name)
    if opts.selection not in ("reference", "strength"):
        raise UserError(f"--selection must be reference or strength, got {opts.selection!r}")
    if opts.plot and not analysis.plot:
        drawn = ", ".join(f"{name} ({a.plot})" for name, a in ANALYSES.items() if a.plot)
        raise UserError(f"--method {method_name} draws no plot; --plot is for {drawn}")
    if analysis.needs_data and not opts.data:
        raise UserError(f"--method {method_name} evaluates the model: give --data SPEC (validation data)")
    return analysis


def run_analysis(src: str, method_name: str, opts: AnalysisOptions, out: str = "-") -> dict:
    """Run one analysis on checkpoint `src` and write the report JSON to `out` (`-`: stdout)."""
    from prunecli.io import atomic
    from prunecli.io import checkpoint as ckpt
    from prunecli.methods import get_method

    analysis = resolve(method_name, opts)
    if out != "-" and not Path(out).parent.is_dir():  # fail before a long sweep, not after it
        raise UserError(f"output folder does not exist: {Path(out).parent}")
    method = get_method(method_name)
    loaded = ckpt.load(src)
    results = importlib.import_module(analysis.module).analyze(loaded, opts)
    chosen = {k: v for k, v in asdict(opts).items() if k in analysis.options}
    for key in ("ratios", "thresholds", "layers"):
        if key in chosen:
            chosen[key] = list(chosen[key])
    report = {
        "format": FORMAT, "version": VERSION, "method": method.name, "paper": method.paper,
        "checkpoint": str(src), "sha256": loaded.sha256, "model": loaded.header.model.name,
        "input_shape": list(loaded.header.input_shape), "protected": list(loaded.entry.protected),
        "options": chosen, **results,
    }
    if opts.plot and analysis.figure:
        from prunecli.analysis import plots

        plots.save(getattr(plots, analysis.figure)(report), opts.plot)
    atomic.write_json(out, report)
    return report


def summary(report: dict):
    """The human table for a report (delegates to the analysis that produced it)."""
    return importlib.import_module(ANALYSES[report["method"]].module).summary(report)
