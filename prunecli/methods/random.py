"""Random importance: the baseline every pruning criterion must beat.

Blalock et al., "What is the State of Neural Network Pruning?", MLSys 2020, recommend always
reporting it. Seeded (`--seed`), so a random pruning is reproducible.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import RANKING


def _random(seed: int = 0):
    import torch
    import torch_pruning as tp

    class SeededRandom(tp.importance.Importance):
        def __init__(self):
            self.gen = torch.Generator().manual_seed(seed)

        def __call__(self, group, **kwargs):
            return torch.rand(len(group[0].idxs), generator=self.gen)

    return SeededRandom()


register_method(Method(
    "random", "structured", "Blalock et al. MLSys 2020",
    "uniformly random channel scores (seeded baseline)", importance=_random, params=RANKING,
))
