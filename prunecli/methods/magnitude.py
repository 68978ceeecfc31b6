"""Magnitude criteria: L1 / L2 norm of each filter, summed over its coupled group.

Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 (L1 filter norm); the
group-level sum over coupled layers is DepGraph's (Fang et al., CVPR 2023).
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import RANKING


def _magnitude(p: int):
    def make(seed: int = 0):
        import torch_pruning as tp

        return tp.importance.GroupMagnitudeImportance(p=p)

    return make


register_method(Method(
    "l1", "structured", "Li et al. ICLR 2017",
    "L1 norm of each filter over its coupled group (DepGraph grouping)", importance=_magnitude(1), params=RANKING,
))
register_method(Method(
    "l2", "structured", "Li et al. ICLR 2017; Fang et al. CVPR 2023",
    "L2 norm of each filter over its coupled group", importance=_magnitude(2), params=RANKING,
))
register_method(Method(
    "magnitude", "analysis", "Li et al. ICLR 2017",
    "per-layer filter-norm statistics (analyze)",
))
register_method(Method(
    "sensitivity", "analysis", "Li et al. ICLR 2017 §3.2",
    "accuracy drop when each layer alone is pruned at ratios 0.1…0.9 (analyze)",
))
