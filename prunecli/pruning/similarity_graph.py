"""The similarity graph of Li et al. (PRL 2023): perceptual hashes of feature maps, mean
pairwise similarity, and the paper's greedy representative per neighbourhood.

Used by `analyze --method similarity` (prunecli/analysis/similarity.py) and, through it, by
`prune --method similarity` (prunecli/methods/similarity.py, which cites the paper): the
dependency runs methods → analysis → this module, never back. torch is imported inside the
functions, so the method file that re-exports these names stays light for `prune --help`.

Each filter's raw conv output (before BN/ReLU) on N training images is reduced to a
perceptual hash: the 8×8 low-frequency block of its 2-D DCT-II, thresholded at the block's
mean. Two filters' similarity is 1 − Hamming/k², averaged over the samples. Filters become
nodes, an edge joins pairs with mean similarity ≥ τ, and the paper's greedy star rule keeps
one representative per neighbourhood. τ alone sets how much is pruned.

Tie-breaks (`selection`): "reference" (the default) reproduces the reference's
`FilterSelection.__filter_vertices__` exactly: nodes are visited in the iteration order of the
Python sets it builds (not ascending), and a node's weight is the sum of its edges' weights
rounded to 2 decimals with Python's `round`, added left to right in edge-id order. The reference gets that
weight from igraph's `g.es.select(_source=u)`; on an undirected graph python-igraph (0.9.11,
the version the reference pins, and later) rewrites `_source` to `_incident`, so it is the full
weighted degree of u, not only the edges stored with u as source. "strength" is our earlier
rule, kept as the documented alternative: visit in ascending index order, weight = full
weighted degree with torch's rounding. They part only on ties: on 120 random pHash-like graphs
(tests/unit/test_similarity_selection.py) 16 kept sets differed, 4 of them in size.
Exactness assumes the float64 mean similarities the reference computes (a float32 copy of a
mean such as 0.745 rounds to 0.75 instead of 0.74): `collect` keeps float64; a `--reuse`d
report stores the means to 5 decimals.

VGG's hidden FC-512 follows the last conv (`tied` on the model entry): the reference removes
the conv's filters from its inputs and the same indices from its outputs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

HASH_SIZE = 8


def dct_matrix(n: int, k: int) -> torch.Tensor:
    """The first `k` rows of the (unnormalised) DCT-II matrix of size n; scale does not change a hash."""
    import torch

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


SELECTIONS = ("reference", "strength")


def select(sim: torch.Tensor, threshold: float, selection: str = "reference") -> dict:
    """The paper's greedy selection on the graph {(i,j): S̄(i,j) ≥ τ, i ≠ j}.

    `selection` picks the tie-break rule (module docstring): "reference" or "strength".
    Returns kept and deleted filter indices, the edge count and each filter's degree.
    """
    import torch

    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    c = sim.shape[0]
    adj = (sim >= threshold) & ~torch.eye(c, dtype=torch.bool)
    degree = adj.sum(1).tolist()
    neighbours = [torch.nonzero(adj[v]).flatten().tolist() for v in range(c)]
    if selection == "reference":
        deleted = _reference_pass(sim.double().tolist(), neighbours, degree)
    else:
        weights = torch.where(adj, sim.double().mul(100).round().div(100), torch.zeros((), dtype=torch.float64))
        deleted = _strength_pass(neighbours, degree, weights.sum(1).tolist())
    kept = [i for i in range(c) if i not in deleted]
    return {"kept": kept, "deleted": sorted(deleted), "edges": int(adj.sum()) // 2, "degree": degree}


def _strength_pass(neighbours: list[list[int]], degree: list[int], strength: list[float]) -> set[int]:
    """Our rule: visit filters in ascending order; weight = full weighted degree."""
    saved: set[int] = set()
    deleted: set[int] = set()
    for v in range(len(degree)):
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
    return deleted


def _sum_left_to_right(values: list[float]) -> float:
    """`sum()` as Python ≤ 3.11 computes it (the reference ran 3.8): plain float additions from 0.

    Python 3.12's `sum()` compensates rounding (Neumaier), which changes which of two equal
    weights compares larger and so the kept filters.
    """
    total = 0.0
    for v in values:
        total += v
    return total


def _reference_pass(sim: list[list[float]], neighbours: list[list[int]], degree: list[int]) -> set[int]:
    """`FilterSelection.__filter_vertices__` of the reference, step for step.

    The sets are built by the same operations in the same order, so Python iterates them in
    the same order as the reference did (CPython's int hashing is the identity; a pure-Python
    transcription of the reference keeps the same filters on 300 random graphs under CPython
    3.7, 3.8 — the reference's — 3.10, 3.11, 3.12 and 3.13 once `sum` is left to right). igraph's
    `neighbors` returns ascending ids; an edge's label is `round(S̄, 2)` of the float64 mean;
    `es.select(_source=u)` is u's incident edges (undirected graph) in edge-id order, which for
    edges added as sorted pairs (i<j) is u's neighbours in ascending order.
    """
    c = len(degree)
    label = [[round(sim[min(i, j)][max(i, j)], 2) for j in neighbours[i]] for i in range(c)]
    weight = [_sum_left_to_right(row) for row in label]
    all_vertices, isolated_vertices = set(list(range(c))), set([v for v in range(c) if degree[v] == 0])
    saved_vertices: set[int] = set()
    deleted_vertices: set[int] = set()
    for vertex in all_vertices - isolated_vertices:
        if vertex in (saved_vertices | deleted_vertices):
            continue
        neighbors = neighbours[vertex]
        if len(neighbors) == 1 and degree[neighbors[0]] == 1:
            saved_vertices.add(vertex)
            deleted_vertices = deleted_vertices | set(neighbors)
            continue
        if len(neighbors) == 1 and degree[neighbors[0]] != 1:
            deleted_vertices.add(vertex)
            continue
        neighbors = set(neighbors) - (saved_vertices | deleted_vertices)
        if len(neighbors) == 0:
            saved_vertices.add(vertex)
            continue
        max_degree, max_weight, saved_vertex = degree[vertex], weight[vertex], vertex
        for neighbor in neighbors:
            if degree[neighbor] > max_degree or (degree[neighbor] == max_degree and weight[neighbor] > max_weight):
                max_degree, max_weight, saved_vertex = degree[neighbor], weight[neighbor], neighbor
        saved_vertices.add(saved_vertex)
        deleted_vertices = deleted_vertices | ((neighbors | {vertex}) - {saved_vertex})
    return deleted_vertices


def tied_layers(model, entry) -> list[tuple[str, str]]:
    """The entry's (follower, leader) pairs whose sizes still match (VGG's FC-512 and last conv).

    The reference removes from VGG-16's hidden FC-512 the last conv's filters on its inputs and
    the same indices on its outputs; a model whose widths no longer match (pruned by another
    method before) cannot follow, and we say so.
    """
    from prunecli.console import warn
    from prunecli.pruning.structured import _out_channels

    named = dict(model.named_modules())
    pairs = []
    for follower, leader in getattr(entry, "tied", ()):
        a, b = named.get(follower), named.get(leader)
        if a is None or b is None or _out_channels(a) != _out_channels(b):
            warn(f"{follower} does not follow {leader}: its width differs (pruned before?); left as it is")
            continue
        pairs.append((follower, leader))
    return pairs
