"""The similarity graph's tie-breaks (Li et al. PRL 2023): `selection="reference"` must keep
exactly the filters the reference code keeps, `"strength"` is our documented alternative.

The reference is transcribed below as plain Python: `ReferenceGraph` stands in for the few
python-igraph 0.9.11 calls `FilterSelection.__create_graph__/__filter_vertices__` make (no
igraph dependency), and `reference_deleted` is those two methods with the DataFrame replaced
by the list of rows it holds.
"""

from __future__ import annotations

import random

import pytest
import torch

from prunecli.methods.similarity import _sum_left_to_right, select, similarity_sum


class ReferenceGraph:
    """The parts of an undirected `igraph.Graph` the reference uses, with igraph's semantics.

    - `add_edges`: edge ids in insertion order; igraph's C core stores an undirected edge with
      from = the larger endpoint, to = the smaller (kept here for the record; nothing below
      depends on it, because of the next point).
    - `es_select_source(u)` is `g.es.select(_source=u)`: on an undirected graph python-igraph
      (0.9.x `EdgeSeq.select`, and later) translates `_source` to `_incident`, i.e. every edge
      incident on u, in increasing edge id (`sorted(candidates)`).
    - `neighbors(v)`: ascending vertex ids; `degree(v)`: the number of incident edges.
    """

    def __init__(self) -> None:
        self.n = 0
        self.edges: list[tuple[int, int]] = []  # (from, to) as igraph stores them
        self.vs_label: list[int] = []
        self.es_label: list[float] = []

    def add_vertices(self, names: list[int]) -> None:
        self.n += len(names)

    def add_edges(self, pairs: list[tuple[int, int]]) -> None:
        self.edges += [(max(a, b), min(a, b)) for a, b in pairs]

    def incident(self, v: int) -> list[int]:
        return [e for e, (a, b) in enumerate(self.edges) if v in (a, b)]

    def neighbors(self, v: int) -> list[int]:
        return sorted(b if a == v else a for a, b in (self.edges[e] for e in self.incident(v)))

    def degree(self, v: int) -> int:
        return len(self.incident(v))

    def vs_select_degree0_label(self) -> list[int]:
        return [self.vs_label[v] for v in range(self.n) if self.degree(v) == 0]

    def es_select_source(self, u: int) -> list[float]:
        candidates = set(self.incident(u))  # `_source` on an undirected graph becomes `_incident`
        return [self.es_label[e] for e in sorted(candidates)]


def sum38(values) -> float:
    """The reference's `sum()` under its Python 3.8: left-to-right float additions (Python ≥ 3.12
    compensates the rounding, which would move ties)."""
    total = 0
    for v in values:
        total = total + v
    return total


def reference_deleted(sim: list[list[float]], filters_num: int, threshold: float) -> set[int]:
    """`FilterSelection.__create_graph__` + `__filter_vertices__`, transcribed.

    `get_similarity` returns the mean similarity of every pair i<j sorted by (i, j) (pandas
    groupby-mean); its rows are the upper triangle of `sim` in that order.
    """
    rows = [(i, j, sim[i][j]) for i in range(filters_num) for j in range(i + 1, filters_num)]
    rows = [r for r in rows if r[2] >= threshold]  # df[df["similarity"] >= threshold]
    g = ReferenceGraph()
    g.add_vertices([i for i in range(filters_num)])
    g.add_edges([(i, j) for i, j, _ in rows])
    g.vs_label = [i for i in range(filters_num)]
    g.es_label = [round(s, 2) for _, _, s in rows]  # a pandas float Series iterates as Python floats

    all_vertices, isolated_vertices = set(g.vs_label), set(g.vs_select_degree0_label())
    saved_vertices, deleted_vertices = set(), set()
    for vertex in (all_vertices - isolated_vertices):
        if vertex in (saved_vertices | deleted_vertices):
            continue
        neighbors = g.neighbors(vertex)
        if len(neighbors) == 1 and g.degree(neighbors[0]) == 1:
            saved_vertices.add(vertex)
            deleted_vertices = deleted_vertices | set(neighbors)
            continue
        if len(neighbors) == 1 and g.degree(neighbors[0]) != 1:
            deleted_vertices.add(vertex)
            continue
        neighbors = set(neighbors) - (saved_vertices | deleted_vertices)
        if len(neighbors) == 0:
            saved_vertices.add(vertex)
            continue
        max_degree, max_weight = g.degree(vertex), sum38(g.es_select_source(vertex))
        saved_vertex = vertex
        for neighbor in neighbors:
            tmp_degree, tmp_weight = g.degree(neighbor), sum38(g.es_select_source(neighbor))
            if (tmp_degree > max_degree) or (tmp_degree == max_degree and tmp_weight > max_weight):
                max_degree, max_weight, saved_vertex = tmp_degree, tmp_weight, neighbor
        saved_vertices.add(saved_vertex)
        deleted_vertices = deleted_vertices | ((neighbors | {vertex}) - {saved_vertex})
    return deleted_vertices


def _random_similarity(seed: int) -> tuple[torch.Tensor, float]:
    """A mean-pHash-like matrix: N samples of k²-bit hashes, so values sit on the 1/(k²N) grid
    (degree ties, equal rounded weights and exact .xx5 decimals all happen), and a τ on it."""
    rnd = random.Random(seed)
    c, n, k2 = rnd.choice([6, 12, 24, 48, 96, 160]), rnd.choice([2, 5, 20, 50]), rnd.choice([4, 16, 64])
    gen = torch.Generator().manual_seed(seed)
    bits = (torch.rand(n, c, k2, generator=gen, dtype=torch.float64)
            > torch.rand(1, c, 1, generator=gen, dtype=torch.float64)).double()
    return similarity_sum(bits) / n, rnd.choice([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8])


def test_reference_selection_equals_the_transcribed_reference_on_random_graphs():
    differs = 0
    for seed in range(120):
        sim, tau = _random_similarity(seed)
        c = sim.shape[0]
        want = reference_deleted(sim.tolist(), c, tau)
        got = select(sim, tau, "reference")
        assert set(got["deleted"]) == want, f"seed {seed}"
        assert got["kept"] == sorted(set(range(c)) - want)
        differs += select(sim, tau, "strength")["kept"] != got["kept"]
    assert differs > 0  # the graphs do exercise the tie-breaks where the two rules part


def _hand_graph() -> torch.Tensor:
    """Filter 0 joins 3 and 9; 3-9 are joined; 5 hangs on 3 and 7 on 9; 1, 2, 4, 6, 8 alone.

    All weights are 0.9, so 3 and 9 tie on degree (3) and weight (2.7). Visiting 0 first, the
    reference iterates the set {3, 9}, which CPython orders 9, 3 (slot = id mod 8), and keeps
    the first maximum: 9. Ascending order keeps 3.
    """
    sim = torch.eye(10, dtype=torch.float64)
    for i, j in [(0, 3), (0, 9), (3, 9), (3, 5), (9, 7)]:
        sim[i, j] = sim[j, i] = 0.9
    return sim


def test_hand_built_graph_where_reference_and_strength_part():
    sim = _hand_graph()
    assert reference_deleted(sim.tolist(), 10, 0.8) == {0, 3, 5, 7}
    assert select(sim, 0.8)["kept"] == [1, 2, 4, 6, 8, 9]  # the default is the reference
    assert select(sim, 0.8, "reference")["kept"] == [1, 2, 4, 6, 8, 9]
    assert select(sim, 0.8, "strength")["kept"] == [1, 2, 3, 4, 6, 8]


def test_reference_weights_are_python_rounded_float64_means():
    """Degree ties go to the larger sum of edge weights rounded to 2 decimals by Python's
    `round` on the float64 mean (0.745 is 0.74499… in binary and rounds down, 0.755 up):
    filter 1 weighs 0.9 + 0.74 + 0.74 = 2.38 and filter 2 0.9 + 0.76 + 0.73 = 2.39, so 2
    represents 0's star, though 1's unrounded sum (2.39) beats 2's (2.385)."""
    sim = torch.eye(7, dtype=torch.float64)
    edges = {(0, 1): 0.9, (0, 2): 0.9, (1, 3): 0.745, (1, 4): 0.745, (2, 5): 0.755, (2, 6): 0.73}
    for (i, j), w in edges.items():
        sim[i, j] = sim[j, i] = w
    assert reference_deleted(sim.tolist(), 7, 0.7) == {0, 1, 3, 4, 5, 6}
    assert select(sim, 0.7, "reference")["kept"] == [2]


def test_unknown_selection_is_refused():
    with pytest.raises(ValueError, match="selection"):
        select(_hand_graph(), 0.8, "sideways")


def test_weights_are_added_left_to_right_as_python_3_8_did():
    """Python 3.12's `sum()` compensates rounding (0.1 × 10 → 1.0); the reference's 3.8 did not."""
    assert _sum_left_to_right([0.1] * 10) == sum38([0.1] * 10) == 0.9999999999999999
