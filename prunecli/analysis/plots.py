"""`analyze --plot`: the figures people look for, drawn from a finished report.

- sensitivity: accuracy against the fraction of a layer's filters pruned away, one curve per
  layer pruned alone, the unpruned accuracy at 0% (Li et al., "Pruning Filters for Efficient
  ConvNets", ICLR 2017, Fig. 2(b); their Fig. 3 for ResNets);
- magnitude: each layer's filter L1 norms sorted in descending order and divided by the layer's
  largest, against the filter's rank as a fraction of the layer's filters (their Fig. 2(a)).

Drawn from the report (not the model), so a saved report can be re-plotted. matplotlib runs
headless (Agg) and the PNG is written atomically (prunecli/io/atomic.py): an interrupted run
never leaves half a picture. The output format is PNG whatever the file is called.
"""

from __future__ import annotations

import io

MANY = 20
"""Above this many curves the legend would hide the plot: a depth colour bar replaces it."""


def save(fig, path: str) -> None:
    """Render `fig` as a PNG and write it to `path` atomically; closes the figure."""
    import matplotlib.pyplot as plt

    from prunecli.io import atomic

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(ax, curves: list[tuple[str, list[float], list[float], dict]]) -> None:
    """One line per (label, xs, ys, style), coloured by depth; a legend, or a colour bar when many."""
    plt = _pyplot()
    cmap = plt.get_cmap("viridis")
    n = len(curves)
    for i, (label, xs, ys, style) in enumerate(curves):
        ax.plot(xs, ys, marker="o" if n <= MANY else None, ms=3, lw=1.2, label=label,
                color=style.get("color", cmap(i / max(1, n - 1))), ls=style.get("ls", "-"))
    if n <= MANY:
        ax.legend(fontsize=6, ncol=1 + n // 12, loc="best", framealpha=0.7)
    elif n:
        bar = ax.figure.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, n - 1)), ax=ax)
        bar.locator = plt.MaxNLocator(integer=True)
        bar.update_ticks()
        bar.set_label(f"layer depth (0 = {curves[0][0]}, {n - 1} = {curves[-1][0]})", fontsize=7)


def sensitivity(report: dict):
    """Top-1 accuracy (%) vs filters pruned away (%), one curve per layer pruned alone."""
    plt = _pyplot()
    base = report["baseline"]["top1"]
    curves = []
    for layer in report["layers"]:
        if "results" not in layer:
            continue  # skipped (attention heads, grouped convs...): no curve
        xs = [0.0] + [100 * r["pruned"] / layer["channels"] for r in layer["results"]]
        ys = [base] + [r["top1"] for r in layer["results"]]
        curves.append((layer["name"], xs, ys, {}))
    fig, ax = plt.subplots(figsize=(8, 5))
    _curves(ax, curves)
    ax.axhline(base, ls="--", lw=0.8, color="grey")
    ax.set(xlabel="filters pruned away (%)", ylabel="top-1 accuracy (%)", xlim=(0, 100),
           title=f"sensitivity to pruning, each layer alone: {report['model']}\n"
                 f"{report['data']}, {report['baseline']['samples']} samples, unpruned {base:.2f}% (dashed)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def magnitude(report: dict):
    """Sorted filter L1 norms per layer, each divided by its largest, vs filter rank / filters."""
    plt = _pyplot()
    curves = []
    for layer in report["layers"]:
        norms = sorted(layer["l1_sorted"], reverse=True)
        top = norms[0] if norms and norms[0] > 0 else 1.0
        n = len(norms)
        xs = [(i + 1) / n for i in range(n)]
        style = {"ls": "--", "color": "grey"} if layer["protected"] else {}
        label = layer["name"] + (" (protected)" if layer["protected"] else "")
        curves.append((label, xs, [v / top for v in norms], style))
    fig, ax = plt.subplots(figsize=(8, 5))
    _curves(ax, curves)
    ax.set(xlabel="filter index / filters in the layer (sorted by L1 norm)",
           ylabel="L1 norm / the layer's largest", xlim=(0, 1), ylim=(0, 1.05),
           title=f"filters ranked by Σ|w| per layer: {report['model']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
