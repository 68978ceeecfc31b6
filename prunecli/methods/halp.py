"""HALP: hardware-aware latency pruning as a latency-saliency knapsack.

Shen, Molchanov, Yin, Alvarez, "Structural Pruning via Latency-Saliency Knapsack", NeurIPS 2022
(arXiv 2210.06659). Each channel's importance (the paper: Taylor, Molchanov et al. 2019; here
any criterion, `--importance taylor|l1|l2`) is summed over the channels a group keeps, the
channels sorted by importance within the group; each candidate width has a latency cost from a
lookup table measured on this device (`profiling.lut`); a knapsack keeps the most importance
under the latency budget (`--target-latency 0.5x|12ms` at `--latency-batch`).

Differences from the paper, kept small: the groups are Torch-Pruning's dependency groups, so
channels coupled by residual adds are one knapsack item (the paper's grouping of coupled
layers) and the knapsack is exact over them; pruning is one shot (the paper prunes in steps
between fine-tuning, re-solving with the previous step's input widths: we re-solve three times
around the previous solution's widths, each layer's latency expanded to first order in its
output and its input width so that narrowing a group also earns what it saves in the layers it
feeds) to a target checked by measuring the pruned model (`pruning.latency_run`). Candidate
widths are a grid of ≤ 16 per group, multiples of 8 where the step is that coarse (the paper:
every width, its latency table stepped per layer). The table times inputs as well as outputs,
and the layers it does not time are charged by activation volume (`pruning.latency.Predictor`).
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.isomorphic import IMPORTANCE
from prunecli.methods.params import RANKING

# the latency budget decides every width: no ratio, MAC budget, rounding, global/local or head options
OWN = ("target_latency", "latency_batch", "max_ratio", "calib_batches", "timeout")

register_method(Method(
    "halp", "structured", "Shen et al. NeurIPS 2022",
    "latency-saliency knapsack over channel groups on a measured latency table; --target-latency, "
    "--importance taylor|l1|l2",
    plan={"halp": True},
    importance_option=True,
    params=(*(p for p in RANKING if p.name in OWN), IMPORTANCE),
))
