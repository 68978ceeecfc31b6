"""`analyze --method similarity`: feature-map similarity per layer and what τ would keep.

Li et al., PRL 2023 (the method: `prunecli.methods.similarity`, which calls this module; the
hash and the graph: `prunecli.pruning.similarity_graph`). Hashes are computed once per (sample, filter) inside a forward hook, and pairwise similarities by matrix products, so the
analysis costs about one forward pass over the samples plus a few small matmuls per layer.
The report keeps each deciding layer's mean similarity matrix so `prune --reuse` can skip
the feature maps.
"""

from __future__ import annotations

import copy

import torch

from prunecli.analysis.tables import fitted
from prunecli.console import err, progress
from prunecli.errors import UserError
from prunecli.profiling.counts import count
from prunecli.pruning.groups import channel_groups, prune_indices
from prunecli.pruning.similarity_graph import phash_bits, select, similarity_sum, tied_layers

DEFAULT_THRESHOLDS = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)


def collect(model, groups, calibration, device: str) -> dict:
    """Mean pHash similarity matrix of each deciding conv over the drawn sample images.

    `calibration` is a seeded random draw of the training split (`engine.run.calibration_data`:
    without replacement, no augmentation, the evaluation transform), as the paper drew its
    `--samples` images at random (`random.sample`, unseeded) instead of taking the first ones.
    """
    named = dict(model.named_modules())
    sums = {g.decider: torch.zeros(g.channels, g.channels, dtype=torch.float64, device=device) for g in groups}

    def hook(name):
        def fn(module, inputs, output):
            sums[name] += similarity_sum(phash_bits(output.detach()))
        return fn

    handles = [named[g.decider].register_forward_hook(hook(g.decider)) for g in groups]
    seen = 0
    model.eval().to(device)
    try:
        with torch.no_grad(), progress() as bar:
            task = bar.add_task("feature maps", total=calibration.record["images"], status="")
            for x, _ in calibration.batches:
                model(x.to(device))
                seen += len(x)
                bar.advance(task, len(x))
    finally:
        for h in handles:
            h.remove()
    return {name: (s / seen).cpu() for name, s in sums.items()}


def draw_samples(loaded, opts):
    """The `--samples` training images of `opts.data`, a seeded (`--seed`) random draw."""
    from prunecli.engine.run import calibration_data

    return calibration_data(loaded, opts.data, opts.samples, seed=opts.seed,
                            batch_size=min(opts.batch_size, opts.samples))


def from_report(path: str, loaded, groups) -> dict:
    """The similarity matrices of an earlier `analyze --method similarity` on the same checkpoint."""
    import json
    from pathlib import Path

    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"--reuse {path}: cannot read the report ({error})") from None
    if report.get("format") != "prunecli-analysis" or report.get("method") != "similarity":
        raise UserError(f"--reuse {path} is not a `prunecli analyze --method similarity` report")
    if report.get("sha256") != loaded.sha256:
        raise UserError(f"--reuse {path} was computed for another checkpoint (sha256 differs)")
    matrices = {layer["name"]: torch.tensor(layer["matrix"], dtype=torch.float64) for layer in report.get("layers", [])}
    missing = [g.decider for g in groups if g.decider not in matrices]
    if missing:
        raise UserError(f"--reuse {path} has no similarity matrix for {', '.join(missing[:3])}")
    return matrices


def decisions(groups, matrices: dict, threshold: float, selection: str = "reference",
              tied=()) -> tuple[dict, dict]:
    """Deleted indices and graph facts per deciding conv at threshold τ.

    `tied` (follower, leader) pairs: the follower (VGG's hidden FC) loses the same output
    indices as the leader conv, as in the reference (the model entry declares them).
    """
    removed, details = {}, {}
    for g in groups:
        sel = select(matrices[g.decider], threshold, selection)
        removed[g.decider] = sel["deleted"]
        details[g.decider] = {"threshold": threshold, "graph_nodes": g.channels, "edges": sel["edges"],
                              "kept_degree": [sel["degree"][i] for i in sel["kept"]], "decided_by": g.decider,
                              "selection": selection}
    for follower, leader in tied:
        if leader in removed:
            removed[follower] = list(removed[leader])
            details[follower] = {"threshold": threshold, "decided_by": leader, "tied_to": leader}
    return removed, details


def analyze(loaded, opts) -> dict:
    from prunecli.utils.runtime import resolve_device

    model, shape = loaded.model, loaded.header.input_shape
    groups = channel_groups(model, shape, loaded.entry.protected)
    err.print(f"{len(groups)} channel groups; hashing {opts.samples} samples")
    calibration = draw_samples(loaded, opts)
    err.print(f"{calibration.record['images']} random training images (seed {opts.seed}, "
              f"{calibration.record['classes']} classes)")
    matrices = collect(model, groups, calibration, resolve_device(opts.device))
    model.cpu()
    base = count(model, shape)
    selection = opts.selection
    tied = tied_layers(model, loaded.entry)
    layers = [_layer_report(g, matrices[g.decider], opts.thresholds, selection) for g in groups]
    sweep = []
    for tau in opts.thresholds:
        pruned = copy.deepcopy(model)
        prune_indices(pruned, shape, decisions(groups, matrices, tau, selection, tied)[0])
        after = count(pruned, shape)
        sweep.append({"threshold": tau, "macs": after.macs, "params": after.params,
                      "macs_reduction": 1 - after.macs / base.macs, "params_reduction": 1 - after.params / base.params})
    if opts.plot:
        plot(layers, sweep, base.macs, opts.plot)
    return {"samples": opts.samples, "macs": base.macs, "params": base.params, "layers": layers, "sweep": sweep,
            "calibration": {**calibration.record, "mode": "eval"}}


def _layer_report(group, sim: torch.Tensor, thresholds, selection: str = "reference") -> dict:
    c = sim.shape[0]
    off = sim[~torch.eye(c, dtype=torch.bool)] if c > 1 else torch.zeros(1)
    per_tau = []
    for tau in thresholds:
        sel = select(sim, tau, selection)
        per_tau.append({"threshold": tau, "kept": len(sel["kept"]), "edges": sel["edges"],
                        "degree_histogram": torch.bincount(torch.tensor(sel["degree"]), minlength=1).tolist()})
    q = torch.quantile(off.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return {"name": group.decider, "members": group.members, "filters": c,
            "similarity": {"mean": float(off.mean()), "max": float(off.max()), "q10": q[0], "q50": q[1], "q90": q[2]},
            "sweep": per_tau, "matrix": [[round(float(v), 5) for v in row] for row in sim]}


def plot(layers: list[dict], sweep: list[dict], base_macs: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for layer in layers:
        ax1.plot([p["threshold"] for p in layer["sweep"]], [p["kept"] / layer["filters"] for p in layer["sweep"]],
                 marker=".", lw=1, label=layer["name"])
    ax1.set(xlabel="threshold τ", ylabel="fraction of filters kept", title="kept filters per layer")
    if len(layers) <= 20:
        ax1.legend(fontsize=6, ncol=2)
    ax2.plot([s["threshold"] for s in sweep], [s["macs"] / 1e6 for s in sweep], marker="o")
    ax2.axhline(base_macs / 1e6, ls="--", color="grey", label="unpruned")
    ax2.set(xlabel="threshold τ", ylabel="MMACs", title="model MACs after pruning")
    ax2.legend()
    fig.tight_layout()
    from prunecli.analysis.plots import save

    save(fig, path)  # atomic


def summary(report: dict):
    cols = ["layer", "filters", "mean sim"] + [f"τ={s['threshold']:.2f}" for s in report["sweep"]]
    rows = [[la["name"], la["filters"], la["similarity"]["mean"]] + [p["kept"] for p in la["sweep"]]
            for la in report["layers"]]
    rows.append(["MACs reduction %", "", ""] + [f"{100 * s['macs_reduction']:.1f}" for s in report["sweep"]])
    return fitted("filters kept per threshold (similarity graph)", cols, rows, keys=3)
