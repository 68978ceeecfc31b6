"""Filter-norm statistics per prunable layer: the data-free look behind magnitude pruning.

Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017, §3.1 rank the filters of a
layer by their L1 norm ∑|w| and plot the sorted norms per layer (their Fig. 2b): a layer whose
norms are spread out has clearly expendable filters, one with flat norms does not. This
reports, per Conv/Linear layer (protected ones included, but marked), the L1 and L2 norm
statistics, the fraction of near-zero filters (dead after training, free to remove), and the
full sorted L1 norms for plotting.

A "filter" is one output channel: `weight[i]` of a Conv or Linear layer, `weight[:, i]` of a
transposed conv (whose weight is stored in × out).
"""

from __future__ import annotations

import torch
import torch.nn as nn

QUANTILES = (0.1, 0.5, 0.9)
NEAR_ZERO = 1e-6
"""A filter is near zero when its L1 norm is below NEAR_ZERO × the layer's largest L1 norm."""


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and Linear layers with weights, in module order: what structured pruning removes from."""
    kinds = (nn.modules.conv._ConvNd, nn.Linear)
    return [(n, m) for n, m in model.named_modules()
            if n and isinstance(m, kinds) and getattr(m, "weight", None) is not None]


def filter_norms(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, L2) norm of each output filter, in float64, one vectorised reduction per norm."""
    w = module.weight.detach().to(torch.float64)
    if getattr(module, "transposed", False):
        w = w.transpose(0, 1)
    flat = w.flatten(1)
    return flat.abs().sum(1), flat.pow(2).sum(1).sqrt()


def stats(norms: torch.Tensor) -> dict[str, float]:
    """min/max/mean/std (population, so one filter gives 0, not NaN) and the 10/50/90 quantiles."""
    q = torch.quantile(norms, torch.tensor(QUANTILES, dtype=norms.dtype))
    out = {"min": float(norms.min()), "max": float(norms.max()), "mean": float(norms.mean()),
           "std": float(norms.std(correction=0))}
    out.update({f"q{round(p * 100)}": float(v) for p, v in zip(QUANTILES, q, strict=True)})
    return out


def layer_report(name: str, module: nn.Module, protected: bool) -> dict:
    l1, l2 = filter_norms(module)
    near_zero = int((l1 < NEAR_ZERO * l1.max()).sum()) if float(l1.max()) > 0 else len(l1)
    return {
        "name": name, "kind": type(module).__name__, "protected": protected,
        "filters": len(l1), "weight_shape": list(module.weight.shape),
        "l1": stats(l1), "l2": stats(l2),
        "near_zero": near_zero, "near_zero_fraction": near_zero / len(l1),
        "l1_sorted": l1.sort().values.tolist(),
    }


def analyze(loaded, opts) -> dict:
    """Per-layer filter-norm statistics of the checkpoint's model (no data needed)."""
    protected = set(loaded.entry.protected)
    layers = [layer_report(n, m, n in protected) for n, m in prunable_layers(loaded.model)]
    return {"layers": layers}


def summary(report: dict):
    rows = [[r["name"] + (" (protected)" if r["protected"] else ""), r["filters"], r["l1"]["mean"],
             r["l1"]["std"], r["l1"]["min"], r["l1"]["max"], f"{100 * r['near_zero_fraction']:.0f}%"]
            for r in report["layers"]]
    from prunecli.analysis.tables import fitted  # long (timm) layer names: split, not cut

    return fitted(f"filter L1 norms of {report['model']} ({report['checkpoint']})",
                  ["layer", "filters", "mean", "std", "min", "max", "near 0"], rows, keys=1)
