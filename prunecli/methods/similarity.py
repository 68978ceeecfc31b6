"""Similarity-graph filter pruning.

Li et al., "A graphical approach for filter pruning by exploring the similarity relation
between feature maps", Pattern Recognition Letters 166 (2023). Our spec:
`shared/research/seeds-similarity-mtp-isomorphic.md` §1.

Each filter's raw conv output (before BN/ReLU) on N training images is reduced to a
perceptual hash: the 8×8 low-frequency block of its 2-D DCT-II, thresholded at the block's
mean. Two filters' similarity is 1 − Hamming/k², averaged over the samples. Filters become
nodes, an edge joins pairs with mean similarity ≥ τ, and the paper's greedy star rule keeps
one representative per neighbourhood. τ alone sets how much is pruned.

Deviation from the reference code, on purpose: a node's weight w(u) in the tie-break is its
full weighted degree (strength). The reference used igraph's `es.select(_source=u)`, which
counts only edges stored with u as source — an artefact of igraph's storage order.
"""

from __future__ import annotations

import math

import torch

from prunecli.methods import Method, register_method

HASH_SIZE = 8


def dct_matrix(n: int, k: int) -> torch.Tensor:
    """The first `k` rows of the (unnormalised) DCT-II matrix of size n; scale does not change a hash."""
    x = torch.arange(n, dtype=torch.float64)
    u = torch.arange(k, dtype=torch.float64).unsqueeze(1)
    return torch.cos(math.pi * (2 * x + 1) * u / (2 * n))


def phash_bits(maps: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] feature maps → [N, C, kh·kw] hash bits (float 0/1), k = min(size, 8)."""
    n, c, h, w = maps.shape
    dh = dct_matrix(h, min(h, HASH_SIZE)).to(maps.device)
    dw = dct_matrix(w, min(w, HASH_SIZE)).to(maps.device)
    block = dh @ maps.double() @ dw.T  # [N, C, kh, kw]: DCT-II along both axes, low frequencies
    flat = block.flatten(2)
    return (flat >= flat.mean(dim=2, keepdim=True)).to(maps.dtype)


def similarity_sum(bits: torch.Tensor) -> torch.Tensor:
    """Σ over samples of s(i,j) = 1 − Hamming(i,j)/k², by matrix products (no loop over pairs)."""
    k2 = bits.shape[2]
    agree = bits @ bits.transpose(1, 2) + (1 - bits) @ (1 - bits).transpose(1, 2)
    return (agree / k2).sum(0)


def select(sim: torch.Tensor, threshold: float) -> dict:
    """The paper's greedy selection on the graph {(i,j): S̄(i,j) ≥ τ, i ≠ j}.

    Returns kept and deleted filter indices, the edge count and each filter's degree.
    """
    c = sim.shape[0]
    adj = (sim >= threshold) & ~torch.eye(c, dtype=torch.bool)
    weights = torch.where(adj, sim.double().mul(100).round().div(100), torch.zeros((), dtype=torch.float64))
    degree = adj.sum(1).tolist()
    strength = weights.sum(1).tolist()
    neighbours = [torch.nonzero(adj[v]).flatten().tolist() for v in range(c)]
    saved: set[int] = set()
    deleted: set[int] = set()
    for v in range(c):
        if degree[v] == 0 or v in saved or v in deleted:
            continue
        nb = neighbours[v]
        if len(nb) == 1 and degree[nb[0]] == 1:  # an isolated pair: keep the first
            saved.add(v)
            deleted.add(nb[0])
        elif len(nb) == 1:  # a leaf on a hub goes; the hub is decided on its own turn
            deleted.add(v)
        else:
            free = [u for u in nb if u not in saved and u not in deleted]
            if not free:
                saved.add(v)
                continue
            best = v
            for u in free:  # strict '>': v wins ties, then the lowest index
                if (degree[u], strength[u]) > (degree[best], strength[best]):
                    best = u
            saved.add(best)
            deleted.update(({v} | set(free)) - {best})
    kept = [i for i in range(c) if i not in deleted]
    return {"kept": kept, "deleted": sorted(deleted), "edges": int(adj.sum()) // 2, "degree": degree}


def decide(loaded, options: dict) -> tuple[dict, dict]:
    """Channels to delete per deciding conv at `options['threshold']`, from fresh feature maps
    (`calibration`: the --samples images `prune` drew with --seed) or from an `analyze --method
    similarity` report (`reuse`)."""
    from prunecli.analysis.similarity import collect, decisions, from_report
    from prunecli.pruning.structured import channel_groups
    from prunecli.utils.runtime import resolve_device

    model, header = loaded.model, loaded.header
    groups = channel_groups(model, header.input_shape, loaded.entry.protected)
    if options.get("reuse"):
        matrices = from_report(options["reuse"], loaded, groups)
    else:
        device = resolve_device(options.get("device", "auto"))
        matrices = collect(model, groups, options["calibration"], device)  # drawn by `prune` (--seed)
        model.cpu()
    return decisions(groups, matrices, options["threshold"])


register_method(Method(
    "similarity", "structured", "Li et al. PRL 2023",
    "feature-map pHash similarity graph, greedy representative per neighbourhood (--threshold τ)",
    decide=decide,
))
