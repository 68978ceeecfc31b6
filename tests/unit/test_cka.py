"""Linear minibatch CKA (`prunecli.analysis.cka`) against naive formulas and CKA's invariances."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prunecli.analysis.cka import Accumulator, cka_matrix, gram, hsic_unbiased
from prunecli.errors import UserError


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """HSIC₁ of Nguyen et al. eq. 3 written out with loops (linear kernels, zeroed diagonals)."""
    n = len(x)
    k = [[0.0 if i == j else float(x[i] @ x[j]) for j in range(n)] for i in range(n)]
    l = [[0.0 if i == j else float(y[i] @ y[j]) for j in range(n)] for i in range(n)]  # noqa: E741
    tr = sum(k[i][j] * l[j][i] for i in range(n) for j in range(n))
    sum_k, sum_l = sum(map(sum, k)), sum(map(sum, l))
    one_kl_one = sum(k[i][j] * l[j][q] for i in range(n) for j in range(n) for q in range(n))
    return (tr + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * one_kl_one / (n - 2)) / (n * (n - 3))


def u_statistic_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """The same estimator as the U-statistic over distinct 4-tuples (Song et al., JMLR 2012, Thm 2)."""
    k, l = x @ x.T, y @ y.T  # noqa: E741
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(len(x)), 4):
        total += float(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q])
        count += 1
    return total / count


def naive_cka(x, y) -> float:
    return naive_hsic(x, y) / math.sqrt(naive_hsic(x, x) * naive_hsic(y, y))


def test_hsic_equals_the_naive_formula_and_the_u_statistic():
    x, y = _rand(7, 5, seed=1), _rand(7, 3, seed=2)
    ours = float(hsic_unbiased(gram(x)[None], gram(y)[None])[0, 0])
    assert ours == pytest.approx(naive_hsic(x, y), rel=1e-10)
    assert ours == pytest.approx(u_statistic_hsic(x, y), rel=1e-10)


def test_one_batch_cka_equals_a_full_batch_computation():
    xs = [_rand(9, 4, seed=3), _rand(9, 2, 3, 3, seed=4), _rand(9, 6, seed=5)]  # conv-like maps are flattened
    ys = [_rand(9, 5, seed=6), xs[0] @ _rand(4, 4, seed=7) + 0.3 * _rand(9, 4, seed=8)]
    ours = cka_matrix([(xs, ys)])
    assert ours.shape == (3, 2)
    for a, b in itertools.product(range(3), range(2)):
        assert float(ours[a, b]) == pytest.approx(naive_cka(xs[a].flatten(1), ys[b].flatten(1)), rel=1e-9)


def test_batches_average_hsic_before_the_ratio():
    x, y = _rand(12, 5, seed=9), _rand(12, 5, seed=10) + _rand(12, 5, seed=9)
    parts = [(x[:6], y[:6]), (x[6:], y[6:])]
    kl = sum(naive_hsic(a, b) for a, b in parts)
    kk = sum(naive_hsic(a, a) for a, _ in parts)
    ll = sum(naive_hsic(b, b) for _, b in parts)
    ours = cka_matrix([([a], [b]) for a, b in parts])
    assert float(ours[0, 0]) == pytest.approx(kl / math.sqrt(kk * ll), rel=1e-9)
    mean_of_ckas = sum(naive_cka(a, b) for a, b in parts) / 2
    assert float(ours[0, 0]) != pytest.approx(mean_of_ckas, rel=1e-3)  # HSICs are averaged, not CKAs


def test_self_similarity_is_one_and_symmetric():
    feats = [_rand(16, 8, seed=11), _rand(16, 3, 4, 4, seed=12), _rand(16, 10, seed=13)]
    feats[2][:, :5] += feats[0][:, :5]  # correlated layers give off-diagonal structure
    m = cka_matrix([(feats, None), ([f + 0.1 for f in feats], None)])
    assert torch.allclose(m.diagonal(), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(m, m.T, atol=1e-12)
    assert float(m[0, 2]) > 0.2 and m.abs().max() <= 1 + 1e-12
    both = cka_matrix([(feats, feats), ([f + 0.1 for f in feats], [f + 0.1 for f in feats])])
    assert torch.allclose(both, m, atol=1e-12)  # two-model path == self path on the same features


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x = _rand(20, 6, seed=14)
    q, _ = torch.linalg.qr(_rand(6, 6, seed=15))
    m = cka_matrix([([x], [x @ q, 3 * x, 3 * x @ q, x + _rand(20, 6, seed=16)])])
    assert torch.allclose(m[0, :3], torch.ones(3, dtype=torch.float64), atol=1e-10)
    assert float(m[0, 3]) < 0.9
    # not invariant to an arbitrary (non-orthogonal) invertible map, as Kornblith et al. note
    assert float(cka_matrix([([x], [x @ torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))])])[0, 0]) < 0.99


def test_batches_smaller_than_four_are_dropped():
    x = _rand(11, 5, seed=17)
    y = x @ _rand(5, 5, seed=18)
    acc = Accumulator()
    assert acc.add(torch.stack([gram(x[:8])]), torch.stack([gram(y[:8])]))
    assert not acc.add(torch.stack([gram(x[8:])]), torch.stack([gram(y[8:])]))
    assert (acc.batches, acc.samples, acc.dropped) == (1, 8, 3)
    assert float(acc.matrix()[0, 0]) == pytest.approx(naive_cka(x[:8], y[:8]), rel=1e-9)
    with pytest.raises(ValueError, match="n >= 4"):
        hsic_unbiased(gram(x[:3])[None], gram(y[:3])[None])
    with pytest.raises(UserError, match="at least 4"):
        cka_matrix([([x[:3]], None)])
