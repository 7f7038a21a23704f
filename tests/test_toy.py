"""The Gaussian-mixture oracle against scipy and against Tweedie's formula by autograd."""

import numpy as np
import pytest
import torch
from scipy import stats

from difflab import schedules
from difflab.errors import DifflabError
from difflab.toy import GaussianMixture

MEANS = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-2.0, 0.0, 1.5]])
STDS = np.array([0.3, 0.5, 0.8])
WEIGHTS = np.array([0.2, 0.5, 0.3])


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture(MEANS, STDS, WEIGHTS)


def scipy_log_prob(x, alpha=1.0, sigma=0.0):
    dens = sum(w * stats.multivariate_normal(alpha * m, (alpha**2 * s**2 + sigma**2) * np.eye(3)).pdf(x)
               for m, s, w in zip(MEANS, STDS, WEIGHTS))
    return np.log(dens)


def test_log_prob_matches_scipy(gm):
    x = np.random.default_rng(0).normal(size=(50, 3)) * 2
    np.testing.assert_allclose(gm.log_prob(torch.tensor(x)).numpy(), scipy_log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(gm.log_prob(torch.tensor(x), 0.6, 0.8).numpy(), scipy_log_prob(x, 0.6, 0.8), rtol=1e-10)


def test_sample_moments(gm):
    x = gm.sample(400_000, torch.Generator().manual_seed(0)).numpy()
    mean = (WEIGHTS[:, None] * MEANS).sum(0)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.01)
    second = sum(w * (np.outer(m, m) + s**2 * np.eye(3)) for m, s, w in zip(MEANS, STDS, WEIGHTS))
    np.testing.assert_allclose(np.cov(x.T, bias=True), second - np.outer(mean, mean), atol=0.02)


@pytest.mark.parametrize("name,t", [("linear", 50), ("linear", 700), ("vp", 0.3), ("ve", 0.5), ("subvp", 0.2)])
def test_denoiser_is_tweedie(gm, name, t):
    """E[x_0 | x_t] = (x_t + σ_t² ∇ log p_t(x_t)) / α_t (Tweedie), with the score by autograd of log p_t."""
    sched = schedules.get(name, T=1000)
    a, s = float(sched.alpha(torch.tensor(t))), float(sched.sigma(torch.tensor(t)))
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    x.requires_grad_(True)
    score = torch.autograd.grad(gm.log_prob(x, a, s).sum(), x)[0]
    pred = gm.denoiser(sched)(x.detach(), torch.tensor(t))
    torch.testing.assert_close(pred.x0, (x.detach() + s**2 * score) / a, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(pred.eps, -s * score, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gm.denoiser(sched).score(x.detach(), torch.tensor(t)), score, rtol=1e-8, atol=1e-8)


def test_bad_mixtures():
    with pytest.raises(DifflabError, match="means"):
        GaussianMixture(np.zeros(3), [1.0])
    with pytest.raises(DifflabError, match="stds"):
        GaussianMixture(np.zeros((2, 2)), [1.0, -1.0])
    with pytest.raises(DifflabError, match="weights"):
        GaussianMixture(np.zeros((2, 2)), [1.0, 1.0], [1.0, -2.0])
    with pytest.raises(DifflabError, match=r"shape \(N, 2\)"):
        GaussianMixture(np.zeros((2, 2)), 1.0).log_prob(torch.zeros(4, 3))
