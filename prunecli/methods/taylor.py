"""First-order Taylor importance: |w · ∂L/∂w| summed over each coupled group.

Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019. Needs
gradients: `prune --method taylor` runs `--calib-batches` batches of `--data` first.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import RANKING


def _taylor(seed: int = 0):
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


register_method(Method(
    "taylor", "structured", "Molchanov et al. CVPR 2019",
    "first-order Taylor |w·grad| over calibration batches", importance=_taylor, needs_gradients=True,
    params=RANKING,
))
