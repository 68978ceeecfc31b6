"""Similarity-graph pruning (Li et al. PRL 2023): hashing, similarity and the greedy rule
on hand-made inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.fftpack import dct

from prunecli.methods.similarity import phash_bits, select, similarity_sum
from prunecli.models import build_model
from prunecli.pruning.groups import channel_groups


def reference_hash(fmap: np.ndarray) -> np.ndarray:
    """The reference code's pHash of one map: scipy DCT-II on both axes, k×k block, ≥ mean."""
    d = dct(dct(fmap, axis=0), axis=1)
    k = min(fmap.shape[0], 8)
    block = d[:k, :k]
    return (block >= block.mean()).flatten()


@pytest.mark.parametrize("size", [2, 4, 8, 16, 32])
def test_hash_matches_reference(size):
    maps = torch.randn(3, 5, size, size, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    bits = phash_bits(maps)
    for n in range(3):
        for c in range(5):
            assert np.array_equal(bits[n, c].numpy().astype(bool), reference_hash(maps[n, c].numpy()))


def test_similarity_matches_pairwise_loop():
    bits = (torch.rand(4, 6, 16, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    got = similarity_sum(bits)
    for i in range(6):
        for j in range(6):
            want = sum(1 - (bits[n, i] != bits[n, j]).sum().item() / 16 for n in range(4))
            assert got[i, j].item() == pytest.approx(want)


def test_identical_maps_collapse_to_one_filter_and_unrelated_ones_stay():
    gen = torch.Generator().manual_seed(1)
    maps = torch.randn(20, 6, 16, 16, generator=gen)
    maps[:, 1] = maps[:, 0]
    maps[:, 2] = maps[:, 0]
    sim = similarity_sum(phash_bits(maps)) / 20
    result = select(sim, 0.95)
    assert result["kept"] == [0, 3, 4, 5] and result["deleted"] == [1, 2]
    unrelated = select(sim[3:, 3:], 0.95)
    assert unrelated["kept"] == [0, 1, 2] and unrelated["edges"] == 0


def _graph(n: int, edges: dict[tuple[int, int], float]) -> torch.Tensor:
    sim = torch.zeros(n, n)
    for (i, j), w in edges.items():
        sim[i, j] = sim[j, i] = w
    return sim + torch.eye(n)


def test_isolated_pair_keeps_the_first():
    assert select(_graph(3, {(0, 1): 0.9}), 0.8)["kept"] == [0, 2]


def test_leaves_on_a_hub_go_and_the_hub_stays():
    sim = _graph(4, {(2, 0): 0.9, (2, 1): 0.9, (2, 3): 0.9})
    assert select(sim, 0.8)["kept"] == [2]


def test_ties_go_to_the_visited_node():
    sim = _graph(3, {(0, 1): 0.9, (0, 2): 0.9, (1, 2): 0.9})
    assert select(sim, 0.8)["kept"] == [0]


def test_degree_ties_are_broken_by_weighted_degree():
    sim = _graph(4, {(0, 1): 0.9, (0, 2): 0.9, (1, 3): 0.99})
    result = select(sim, 0.8)
    assert result["kept"] == [1] and result["degree"] == [2, 2, 1, 1]


def test_threshold_above_all_similarities_keeps_everything():
    sim = _graph(5, {(0, 1): 0.7, (2, 3): 0.75})
    assert select(sim, 0.8)["kept"] == [0, 1, 2, 3, 4]


def test_resnet_groups_are_decided_by_stem_projections_and_first_convs():
    model, _, _ = build_model("resnet20")
    groups = channel_groups(model, (3, 32, 32), ("fc",))
    deciders = [g.decider for g in groups]
    assert deciders[0] == "conv1" and len(groups) == 12
    assert {"layer2.0.shortcut.0", "layer3.0.shortcut.0"} <= set(deciders)
    assert not any(d.endswith("conv2") for d in deciders)
    stage1 = next(g for g in groups if g.decider == "conv1")
    assert {"layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stage1.members)
