"""KID against a brute-force double loop; Inception Score of uniform (1) and one-hot balanced (K) classifiers."""

import math

import pytest
import torch

from difflab.errors import DifflabError
from difflab.metrics.inception_score import inception_score, inception_score_of
from difflab.metrics.kid import kernel_distance, mmd2_unbiased


def _brute_mmd2(x, y):
    d = len(x[0])
    k = lambda a, b: (sum(a[i] * b[i] for i in range(d)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_a_double_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.5
    want = _brute_mmd2(x.tolist(), y.tolist())
    assert mmd2_unbiased(x, y) == pytest.approx(want, rel=1e-12)


def test_kid_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same = kernel_distance(a, b, subsets=20, subset_size=200, generator=g)
    assert abs(same["kid"]) < 4 * same["kid_se"] + 1e-3  # unbiased: centred on 0, can be negative
    far = kernel_distance(a, b + 1.0, subsets=20, subset_size=200, generator=g)
    assert far["kid"] > 10 * far["kid_se"] and far["kid"] > 0.1


def test_kid_bad_input():
    with pytest.raises(DifflabError, match="differ in width"):
        kernel_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(DifflabError, match="2-D tensor"):
        kernel_distance(torch.randn(10), torch.randn(10, 4))


def test_inception_score_of_uniform_and_one_hot_classifiers():
    k = 10
    assert inception_score_of(torch.full((50, k), 1.0 / k)) == pytest.approx(1.0, abs=1e-12)
    one_hot = torch.eye(k).repeat(5, 1)  # balanced: each class 5 times
    assert inception_score_of(one_hot) == pytest.approx(k, rel=1e-12)
    r = inception_score(one_hot, splits=5)  # each split holds every class once
    assert r["is"] == pytest.approx(k) and r["is_std"] == pytest.approx(0.0, abs=1e-12)


def test_inception_score_against_a_direct_formula():
    p = torch.softmax(torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1)
    marg = p.mean(0)
    want = math.exp(sum(float((p[i] * (p[i] / marg).log()).sum()) for i in range(30)) / 30)
    assert inception_score_of(p) == pytest.approx(want, rel=1e-12)


def test_inception_score_bad_input():
    with pytest.raises(DifflabError, match="rows summing to 1"):
        inception_score(torch.rand(10, 3) + 1)
    with pytest.raises(DifflabError, match="splits"):
        inception_score(torch.full((4, 2), 0.5), splits=5)
