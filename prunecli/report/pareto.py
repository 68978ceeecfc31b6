"""The Pareto front (higher metric for less cost) and the accuracy–MACs / –latency plots.

matplotlib is imported in `draw` only (Agg backend: no display needed), so listing and
tables never pay for it.
"""

from __future__ import annotations

import io

from prunecli.report.aggregate import Row
from prunecli.report.paper import PaperTable

AXES = {"macs": ("macs", "MACs per sample"), "latency": ("latency_ms", "latency (ms, median)")}


def front(points: list[tuple[float, float]], higher: bool = True) -> list[int]:
    """Indices of the points no other point dominates, by increasing cost.

    A point (cost, value) is dominated when another costs no more and scores no less, and is
    strictly better in one of the two (`higher=False`: lower value is better). Equal points
    both stay on the front."""
    sign = 1 if higher else -1
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any(qx <= x and sign * qy >= sign * y and (qx < x or sign * qy > sign * y)
                        for j, (qx, qy) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], -sign * points[i][1]))


def plotted(rows: list[Row], axis: str) -> list[Row]:
    """The rows drawn on an axis: each setting's final checkpoint and every base, with both numbers."""
    key = AXES[axis][0]
    return [r for r in rows if (r.final or r.base) and r.stats["acc"].mean is not None and r.stats[key].mean is not None]


def front_of(rows: list[Row], axis: str, higher: bool = True) -> list[Row]:
    """Our rows on the Pareto front of one axis."""
    shown = plotted(rows, axis)
    key = AXES[axis][0]
    return [shown[i] for i in front([(r.stats[key].mean, r.stats["acc"].mean) for r in shown], higher)]


def draw(rows: list[Row], axes: list[str], paper: PaperTable | None, metric: str, title: str = "") -> dict[str, bytes]:
    """One PNG per axis ({axis: bytes}), and 'all' with the panels side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = _colours(rows, paper)
    out = {}
    for axis in axes:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        _panel(ax, rows, axis, paper, metric, colours)
        fig.suptitle(title, fontsize=9)
        out[axis] = _png(fig)
        plt.close(fig)
    fig, panels = plt.subplots(1, len(axes), figsize=(6.4 * len(axes), 4.8), squeeze=False)
    for ax, axis in zip(panels[0], axes, strict=True):
        _panel(ax, rows, axis, paper, metric, colours)
    fig.suptitle(title, fontsize=9)
    out["all"] = _png(fig)
    plt.close(fig)
    return out


def _colours(rows: list[Row], paper: PaperTable | None) -> dict[str, str]:
    methods = [m for m in dict.fromkeys([r.method for r in rows if not r.base] +
                                        [p.method for p in (paper.rows if paper else []) if not p.base])]
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


def _panel(ax, rows: list[Row], axis: str, paper: PaperTable | None, metric: str, colours: dict) -> None:
    key, xlabel = AXES[axis]
    higher = True
    shown = plotted(rows, axis)
    for r in shown:
        x, y = r.stats[key], r.stats["acc"]
        style = dict(marker="*", markersize=14, color="black") if r.base else dict(marker="o", color=colours[r.method])
        ax.errorbar(x.mean, y.mean, yerr=y.std or 0, xerr=x.std or 0, linestyle="none",
                    capsize=3, label=("base (unpruned)" if r.base else r.method), **style)
        ax.annotate(r.setting, (x.mean, y.mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
    best = front_of(rows, axis, higher)
    if len(best) > 1:
        ax.plot([r.stats[key].mean for r in best], [r.stats["acc"].mean for r in best], "--", color="grey",
                linewidth=1, label="Pareto front (ours)", zorder=0)
    pkey = {"macs": "macs", "latency": "latency_ms"}[axis]
    for p in paper.rows if paper else []:
        x, y = getattr(p, pkey), p.value(metric)
        if x is None or y is None:
            continue
        colour = "black" if p.base else colours[p.method]
        ax.scatter([x], [y], marker="*" if p.base else "o", s=120 if p.base else 40, facecolors="none",
                   edgecolors=colour, label=f"{'base' if p.base else p.method} (paper)")
    xs = [r.stats[key].mean for r in shown]
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    batch, device = _latency_setting(shown)
    ax.set_xlabel(xlabel + (f", batch {batch}, {device}" if axis == "latency" and batch else ""))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7)


def _latency_setting(rows: list[Row]) -> tuple[int | None, str | None]:
    for r in rows:
        if r.facts.get("batch"):
            return r.facts["batch"], r.facts.get("device")
    return None, None


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()
