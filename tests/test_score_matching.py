"""Score-matching estimators against their closed forms on a Gaussian model s(x) = −Λ (x − m), and their minimisers."""

import pytest
import torch

from difflab.ebm.score_matching import (
    denoising_score_matching,
    energy_score,
    exact_score_matching,
    sliced_score_matching,
)
from difflab.errors import DifflabError

LAM = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
M = torch.tensor([0.5, -1.0], dtype=torch.float64)


def gaussian_score(lam, m):
    return lambda x: -(x - m) @ lam.T


def quadratic_energy(lam, m):
    return lambda x: 0.5 * (((x - m) @ lam) * (x - m)).sum(1)


@pytest.fixture
def x():
    return torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("model", [gaussian_score(LAM, M), energy_score(quadratic_energy(LAM, M))])
def test_exact_score_matching_is_its_closed_form(x, model):
    """tr ∇s = −tr Λ, so J(x) = −tr Λ + ½ ‖Λ (x − m)‖² for every example."""
    want = -torch.trace(LAM) + 0.5 * (((x - M) @ LAM.T) ** 2).sum(1)
    torch.testing.assert_close(exact_score_matching(model, x), want)


@pytest.mark.parametrize("vr", [False, True])
def test_sliced_score_matching_is_its_closed_form(x, vr):
    """With the projections v drawn from the same seed: vᵀ∇s v = −vᵀΛv, plus ½ (vᵀs)² (or ½ ‖s‖² for SSM-VR)."""
    got = sliced_score_matching(gaussian_score(LAM, M), x, torch.Generator().manual_seed(3), variance_reduced=vr)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    s = -(x - M) @ LAM.T
    want = -((v @ LAM) * v).sum(1) + (0.5 * (s**2).sum(1) if vr else 0.5 * (v * s).sum(1) ** 2)
    torch.testing.assert_close(got, want)


def test_denoising_score_matching_is_its_closed_form(x):
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    got = denoising_score_matching(gaussian_score(LAM, M), x, 0.3, noise=z)
    want = 0.5 * ((-(x + 0.3 * z - M) @ LAM.T + z / 0.3) ** 2).sum(1)
    torch.testing.assert_close(got, want)


def _gradient_at(loss_fn, lam, m):
    lam = lam.clone().requires_grad_(True)
    m = m.clone().requires_grad_(True)
    loss = loss_fn(gaussian_score(lam, m)).mean()
    return torch.autograd.grad(loss, (lam, m)), float(loss.detach())


SIGMA = torch.tensor([[1.0, 0.4], [0.4, 0.5]], dtype=torch.float64)
MU = torch.tensor([1.0, 2.0], dtype=torch.float64)


@pytest.mark.parametrize("estimator", ["exact", "sliced", "sliced-vr", "denoising"])
def test_each_estimator_is_minimised_by_the_true_score(estimator):
    """Data N(μ, Σ): the expected loss is stationary at the data score (Λ = Σ⁻¹, m = μ; for denoising at noise σ the
    noised data's, Λ = (Σ + σ² I)⁻¹) — its gradient over 200,000 examples is zero within sampling noise — and
    larger at a perturbed Λ."""
    g = torch.Generator().manual_seed(0)
    n, sigma = 200_000, 0.5
    x = MU + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(SIGMA).T
    loss = {"exact": lambda s: exact_score_matching(s, x),
            "sliced": lambda s: sliced_score_matching(s, x, torch.Generator().manual_seed(1)),
            "sliced-vr": lambda s: sliced_score_matching(s, x, torch.Generator().manual_seed(1), variance_reduced=True),
            "denoising": lambda s: denoising_score_matching(s, x, sigma, torch.Generator().manual_seed(1))}[estimator]
    cov = SIGMA + (sigma**2 * torch.eye(2, dtype=torch.float64) if estimator == "denoising" else 0)
    lam_true = torch.linalg.inv(cov)
    (g_lam, g_m), at_truth = _gradient_at(loss, lam_true, MU)
    assert float(g_lam.abs().max()) < 0.05 and float(g_m.abs().max()) < 0.05
    (_, _), perturbed = _gradient_at(loss, lam_true * 1.3, MU + 0.2)
    assert perturbed > at_truth + 0.05


def test_a_score_of_the_wrong_shape_is_refused(x):
    with pytest.raises(DifflabError, match=r"score model must return the shape of its input \(50, 2\), got \(50,\)"):
        exact_score_matching(lambda v: v.sum(1), x)
    with pytest.raises(DifflabError, match=r"energy must return one number per example"):
        exact_score_matching(energy_score(lambda v: v), x)
    with pytest.raises(DifflabError, match="sigma > 0"):
        denoising_score_matching(gaussian_score(LAM, M), x, 0.0)
