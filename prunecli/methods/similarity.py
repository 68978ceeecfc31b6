"""Similarity-graph filter pruning.

Jiang Li et al., "A graphical approach for filter pruning by exploring the similarity relation
between feature maps", Pattern Recognition Letters 166 (2023). Our spec:
`shared/research/seeds-similarity-mtp-isomorphic.md` §1.

The algorithm (pHash, similarity, the greedy selection and its two tie-break rules, VGG's tied
FC layer) lives in `prunecli.pruning.similarity_graph`; the feature maps are collected by
`prunecli.analysis.similarity`, which `decide` calls (one direction: this file imports them,
they never import it). Its names are re-exported here for older imports.
"""

from __future__ import annotations

from prunecli.methods import Method, register_method
from prunecli.methods.params import SIMILARITY, THRESHOLD, TIMEOUT, Param
from prunecli.pruning.similarity_graph import (  # noqa: F401  (re-exported: older imports)
    HASH_SIZE,
    SELECTIONS,
    _reference_pass,
    _strength_pass,
    _sum_left_to_right,
    dct_matrix,
    phash_bits,
    select,
    similarity_sum,
    tied_layers,
)


def decide(loaded, options: dict) -> tuple[dict, dict]:
    """Channels to delete per deciding conv at `options['threshold']`, from fresh feature maps
    (`calibration`: the --samples images `prune` drew with --seed) or from an `analyze --method
    similarity` report (`reuse`)."""
    from prunecli.analysis.similarity import collect, decisions, from_report
    from prunecli.pruning.groups import channel_groups
    from prunecli.utils.runtime import resolve_device

    model, header = loaded.model, loaded.header
    groups = channel_groups(model, header.input_shape, loaded.entry.protected)
    if options.get("reuse"):
        matrices = from_report(options["reuse"], loaded, groups)
    else:
        device = resolve_device(options.get("device", "auto"))
        matrices = collect(model, groups, options["calibration"], device)  # drawn by `prune` (--seed)
        model.cpu()
    return decisions(groups, matrices, options["threshold"], options.get("selection") or "reference",
                     tied_layers(model, loaded.entry))


PARAMS = (
    THRESHOLD,
    Param("samples", int, 100, "training images whose feature maps are hashed, a random draw seeded by --seed",
          SIMILARITY, min=1),
    Param("reuse", str | None, None, "an `analyze --method similarity` report of this checkpoint: skip the "
          "feature maps", SIMILARITY),
    Param("selection", str, "reference", "tie-breaks: reference (the paper's code exactly: Python set visiting "
          "order, igraph edge weights) or strength (ours: ascending order, full weighted degree)", SIMILARITY,
          choices=SELECTIONS),
    TIMEOUT,
)

register_method(Method(
    "similarity", "structured", "Jiang Li et al. PRL 2023",
    "feature-map pHash similarity graph, greedy representative per neighbourhood (--threshold τ)",
    decide=decide, params=PARAMS,
))
