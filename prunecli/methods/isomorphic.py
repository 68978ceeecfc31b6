"""Isomorphic pruning: rank channels globally, but only against structurally identical groups.

Fang, Ma, Mi, Wang, "Isomorphic Pruning for Vision Models", ECCV 2024. Our spec:
`shared/research/seeds-similarity-mtp-isomorphic.md` §3. Torch-Pruning's dependency graph
splits the network into groups of coupled channels; groups whose dependency chains have the
same layer types form one ranking scope (e.g. every ViT MLP hidden layer), so a ViT's MLP
widths never compete with its embedding width. Importance comes from `--importance`
(default Taylor, summed over `--calib-batches`, each group normalised by its mean); attention
heads are ranked across all layers (`--head-ratio`), head dims form their own scope
(`--head-dim-ratio`).
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import ISOMORPHIC, RANKING, Param

IMPORTANCE = Param("importance", str, "taylor", "criterion for --method isomorphic|halp", ISOMORPHIC,
                   choices=("taylor", "l1", "l2", "random"))

register_method(Method(
    "isomorphic", "structured", "Fang et al. ECCV 2024",
    "global ranking within isomorphic group scopes; --importance taylor|l1|l2|random",
    plan={"isomorphic": True, "global_pruning": True},
    importance_option=True,
    params=(*RANKING, IMPORTANCE),
))
