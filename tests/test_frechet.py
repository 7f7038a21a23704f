"""Fréchet distance against closed forms (commuting and non-commuting covariances) and scipy."""

import numpy as np
import pytest
import torch
from scipy import linalg

from difflab.errors import DifflabError
from difflab.metrics.frechet import (StreamingStatistics, feature_statistics, frechet_distance, frechet_distance_of,
                                     min_samples)


def test_commuting_covariances_closed_form():
    # diagonal covariances: d² = ‖Δμ‖² + Σ_i (√a_i − √b_i)²
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 16.0])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    want = 1.0 + 4.0 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(want, rel=1e-12)


def test_non_commuting_covariances_against_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    cross = linalg.sqrtm(s1 @ s2).real
    want = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * cross)
    got = frechet_distance(torch.tensor(m1), torch.tensor(s1), torch.tensor(m2), torch.tensor(s2))
    assert got == pytest.approx(want, rel=1e-9)


def test_two_dim_rotation_closed_form():
    # Σ₁ = diag(1, 0) and Σ₂ = diag(0, 1) (commuting, singular): cross term 0, d² = 2
    assert frechet_distance(torch.zeros(2), torch.diag(torch.tensor([1.0, 0.0])), torch.zeros(2),
                            torch.diag(torch.tensor([0.0, 1.0]))) == pytest.approx(2.0, abs=1e-12)


def test_identical_sets_zero_and_statistics_match_numpy():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-9)
    mu, cov = feature_statistics(x)
    assert np.allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), atol=1e-12)
    assert np.allclose(mu.numpy(), x.double().numpy().mean(0), atol=1e-12)


def test_bad_shapes():
    with pytest.raises(DifflabError, match="differ in shape"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(DifflabError, match="2-D tensor"):
        feature_statistics(torch.zeros(5))


def test_streaming_statistics_equal_two_pass_float64():
    """Batches of unequal size merged one by one give the two-pass mean and covariance of all features (numpy, float64)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1003, 6, generator=g) * torch.tensor([1.0, 5, 0.1, 2, 3, 1]) + 100.0  # a large mean tests the merge
    stats = StreamingStatistics()
    for lo, hi in [(0, 1), (1, 300), (300, 301), (301, 1003)]:
        stats.update(x[lo:hi])
    mu, cov = stats.statistics()
    xn = x.double().numpy()
    assert np.allclose(mu.numpy(), xn.mean(0), rtol=0, atol=1e-10)
    assert np.allclose(cov.numpy(), np.cov(xn, rowvar=False), rtol=1e-10, atol=1e-10)
    with pytest.raises(DifflabError, match="cannot join"):
        stats.update(torch.zeros(3, 5))
    with pytest.raises(DifflabError, match="at least 2"):
        StreamingStatistics().update(torch.zeros(1, 6)).statistics()
    assert min_samples(128) == 129
