"""Forward process, posterior and prediction conversions against float64 formulas written here."""

import math

import numpy as np
import pytest
import torch

from difflab import process, schedules
from difflab.errors import DifflabError


@pytest.fixture(scope="module")
def sched():
    return schedules.get("cosine", T=200)


def _ab(s, t):
    return s.alpha_bar.numpy()[t]


def test_q_sample_is_the_closed_form(sched):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 7, 50, 150, 200])
    got = process.q_sample(sched, x0, t, eps).numpy()
    ab = _ab(sched, t.numpy())[:, None]
    np.testing.assert_allclose(got, np.sqrt(ab) * x0.numpy() + np.sqrt(1 - ab) * eps.numpy(), rtol=1e-12)


def test_q_sample_statistics(sched):
    # Monte Carlo: for fixed x0 the empirical mean/var of x_t match sqrt(ab) x0 and 1 - ab.
    g = torch.Generator().manual_seed(1)
    n, t = 200_000, 60
    x0 = torch.full((n, 1), 1.7, dtype=torch.float64)
    x_t = process.q_sample(sched, x0, torch.full((n,), t), torch.randn(n, 1, generator=g, dtype=torch.float64))
    ab = _ab(sched, t)
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 1.7, abs=4e-3)
    assert x_t.var().item() == pytest.approx(1 - ab, rel=1e-2)


def test_posterior_is_bayes_rule(sched):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): the product of two Gaussians in x_{t-1}."""
    x0 = torch.tensor([[0.3], [-1.2], [2.0]], dtype=torch.float64)
    x_t = torch.tensor([[1.0], [0.1], [-0.5]], dtype=torch.float64)
    for t in (2, 30, 199):
        beta = sched.betas.numpy()[t]
        abp = _ab(sched, t - 1)
        # precision-weighted combination
        prec = (1 - beta) / beta + 1 / (1 - abp)
        mean_ref = ((math.sqrt(1 - beta) / beta) * x_t.numpy() + (math.sqrt(abp) / (1 - abp)) * x0.numpy()) / prec
        mean, var = process.q_posterior(sched, x0, x_t, torch.full((3,), t))
        np.testing.assert_allclose(mean.numpy(), mean_ref, rtol=1e-10)
        np.testing.assert_allclose(var.numpy(), np.full((3, 1), 1 / prec), rtol=1e-10)
        # the respaced posterior with s = t - 1 is the same thing
        mean2, var2 = process.q_posterior_between(sched, x0, x_t, torch.full((3,), t), torch.full((3,), t - 1))
        np.testing.assert_allclose(mean2.numpy(), mean.numpy(), rtol=1e-10)
        np.testing.assert_allclose(var2.numpy(), var.numpy(), rtol=1e-10)


def test_posterior_between_distant_steps_is_bayes_rule(sched):
    x0, x_t = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[-0.9]], dtype=torch.float64)
    t, s = 120, 40
    ab_t, ab_s = _ab(sched, t), _ab(sched, s)
    a2 = ab_t / ab_s  # x_t = sqrt(a2) x_s + sqrt(1 - a2) e
    prec = a2 / (1 - a2) + 1 / (1 - ab_s)
    mean_ref = (math.sqrt(a2) / (1 - a2) * -0.9 + math.sqrt(ab_s) / (1 - ab_s) * 0.4) / prec
    mean, var = process.q_posterior_between(sched, x0, x_t, torch.tensor([t]), torch.tensor([s]))
    assert mean.item() == pytest.approx(mean_ref, rel=1e-10)
    assert var.item() == pytest.approx(1 / prec, rel=1e-10)


def test_conversions_round_trip_and_agree(sched):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 20, 100, 200])
    x_t = process.q_sample(sched, x0, t, eps)
    a = np.sqrt(_ab(sched, t.numpy()))[:, None, None, None]
    sg = np.sqrt(1 - _ab(sched, t.numpy()))[:, None, None, None]
    v_ref = a * eps.numpy() - sg * x0.numpy()
    np.testing.assert_allclose(process.v_target(sched, x0, t, eps).numpy(), v_ref, rtol=1e-10, atol=1e-12)
    for param, out in (("eps", eps), ("x0", x0), ("v", torch.from_numpy(v_ref)), ("score", -eps / torch.from_numpy(sg))):
        e, x = process.to_eps_x0(sched, param, x_t, t, out)
        np.testing.assert_allclose(e.numpy(), eps.numpy(), rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(x.numpy(), x0.numpy(), rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(process.target(sched, param, x0, t, eps).numpy(), out.numpy(), rtol=1e-12)
    score = process.eps_to_score(sched, x_t, t, eps).numpy()
    np.testing.assert_allclose(score, -eps.numpy() / sg, rtol=1e-12)


def test_unknown_parameterization():
    with pytest.raises(DifflabError, match="parameterization"):
        process.to_eps_x0(schedules.get("linear", T=50), "score!", torch.zeros(1, 2), torch.tensor([1]), torch.zeros(1, 2))
