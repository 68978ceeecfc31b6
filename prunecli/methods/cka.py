"""Linear minibatch CKA between layers (an analysis; the code is `prunecli.analysis.cka`).

Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019 (CKA);
Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021
(minibatch CKA with the unbiased HSIC estimator); used by the MTP report of Akhtar & Bathula
(2023) to compare one-shot, iterative and layerwise pruned networks.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method

register_method(Method(
    "cka", "analysis", "Kornblith et al. ICML 2019; Nguyen et al. ICLR 2021",
    "linear minibatch CKA (unbiased HSIC) between the layers of one model or two (analyze, --compare)",
))
