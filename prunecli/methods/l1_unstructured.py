"""Unstructured L1 magnitude pruning with one-shot, iterative and layerwise schedules.

Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015 (magnitude pruning with retraining); the three schedules and their comparison
(with CKA) from Akhtar & Bathula, MTP report, IIT Ropar 2023 — our spec is
`shared/research/seeds-similarity-mtp-isomorphic.md` §2. Weights become exact zeros; the
network keeps its shape (dense kernels do not get faster). The schedules live in
`prunecli.pruning.unstructured`.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method

register_method(Method(
    "l1-unstructured", "unstructured", "Han et al. NeurIPS 2015; Akhtar & Bathula 2023 (MTP report)",
    "global L1 weight pruning to --sparsity: --schedule oneshot|iterative|layerwise, fine-tuning between steps",
))
