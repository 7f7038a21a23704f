"""Probability-flow ODE log-likelihood against the Gaussian-mixture oracle's exact log-density, the
Hutchinson trace estimator against the exact trace, and bits/dim on cases worked out by hand."""

import math

import pytest
import torch

from difflab import schedules
from difflab.errors import DifflabError
from difflab.likelihood import bits_per_dim, exact_divergence, hutchinson_divergence, log_likelihood, rademacher
from difflab.random import generators_from_seeds
from difflab.toy import GaussianMixture

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def at(t):
    return torch.tensor(float(t), dtype=F64)


MIX2 = GaussianMixture([[-1.2, 0.8], [1.0, -0.6], [0.3, 1.5]], [0.35, 0.5, 0.3], [0.3, 0.5, 0.2])
_g = torch.Generator().manual_seed(16)
MIX16 = GaussianMixture(torch.randn(3, 16, generator=_g, dtype=F64), [0.4, 0.6, 0.8], [0.2, 0.3, 0.5])


@pytest.mark.parametrize("mixture,schedule_name", [
    (MIX2, "vp"), (MIX2, "linear"), (MIX2, "subvp"), (MIX2, "ve"), (MIX16, "vp"), (MIX16, "linear"),
])
def test_ode_log_likelihood_matches_the_exact_log_density(mixture, schedule_name):
    sch = schedules.get(schedule_name, T=1000)
    x0 = mixture.sample(64, torch.Generator().manual_seed(1))
    logp, nfe = log_likelihood(mixture.denoiser(sch), x0)
    assert logp.shape == (64,) and logp.dtype == F64 and nfe > 7
    exact = mixture.log_prob(x0)
    # within 1% on the mean nats (measured: a few 1e-5 relative)
    assert float((logp.mean() - exact.mean()).abs()) < 0.01 * float(exact.mean().abs())
    # per point, against log p at t_min (the ODE's start): the rest is the N(0, σ_T² I) prior's neglect
    # of α_T μ (VP) or of the data's spread (VE) in p_T, a few 0.01 nats
    truncated = mixture.log_prob(x0, sch.alpha(at(sch.t_min)), sch.sigma(at(sch.t_min)))
    assert float((logp - truncated).abs().max()) < 0.15
    assert float((logp - truncated).mean().abs()) < 0.02


def test_tighter_tolerance_costs_more_evaluations_and_is_no_worse():
    sch = schedules.get("vp")
    den = MIX2.denoiser(sch)
    x0 = MIX2.sample(32, torch.Generator().manual_seed(4))
    exact = MIX2.log_prob(x0)
    loose, nfe_loose = log_likelihood(den, x0, rtol=1e-3, atol=1e-3)
    tight, nfe_tight = log_likelihood(den, x0, rtol=1e-7, atol=1e-7)
    assert nfe_loose < nfe_tight
    assert float((tight - exact).abs().mean()) <= float((loose - exact).abs().mean()) + 1e-3


def test_divergence_estimators_on_a_linear_map():
    """v = x Aᵀ has ∇·v = tr A for every x; Hutchinson with Rademacher probes averages to it exactly
    over all 2^D sign patterns."""
    a = torch.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 0.25], [4.0, 1.0, 0.5]], dtype=F64)
    x = torch.randn(5, 3, dtype=F64, requires_grad=True)
    torch.testing.assert_close(exact_divergence(x @ a.T, x), torch.full((5,), -1.5, dtype=F64))
    signs = torch.tensor([[i >> k & 1 for k in range(3)] for i in range(8)], dtype=F64) * 2 - 1
    probes = signs[:, None, :].expand(8, 5, 3)
    torch.testing.assert_close(hutchinson_divergence(x @ a.T, x, probes), torch.full((5,), -1.5, dtype=F64))


def test_hutchinson_likelihood_is_unbiased():
    """Each row gets its own Rademacher probe; over 300 copies of a point the mean estimate agrees with the
    exact-trace likelihood within 4 standard errors (the x path does not depend on the probe, so the
    estimate's expectation is the exact integral)."""
    sch = schedules.get("vp")
    den = MIX16.denoiser(sch)
    points = MIX16.sample(3, torch.Generator().manual_seed(7))
    exact, _ = log_likelihood(den, points)
    reps = 300
    x0 = points.repeat_interleave(reps, 0)
    est, _ = log_likelihood(den, x0, trace="hutchinson", generator=torch.Generator().manual_seed(8))
    est = est.reshape(3, reps)
    se = est.std(1) / math.sqrt(reps)
    assert torch.all((est.mean(1) - exact).abs() < 4 * se), (est.mean(1), exact, se)
    assert torch.all(est.std(1) > 0.1)  # the single-probe estimate really is noisy
    # more probes per row: same mean, smaller spread (variance / K)
    est4, _ = log_likelihood(den, x0[:reps], trace="hutchinson", num_probes=4,
                             generator=torch.Generator().manual_seed(9))
    assert float(est4.std()) < 0.7 * float(est[0].std())
    assert abs(float(est4.mean() - exact[0])) < 4 * float(est4.std()) / math.sqrt(reps)


def test_hutchinson_probes_per_sample_generators():
    gens = generators_from_seeds([1, 2, 3])
    z = rademacher((3, 2, 5), gens, dtype=F64)
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    alone = rademacher((1, 2, 5), generators_from_seeds([2]), dtype=F64)
    torch.testing.assert_close(z[1:2], alone)


def test_bits_per_dim_by_hand():
    # uniform data over 256 levels is 8 bits/dim: in [0, 1] (scale 1) log p = 0; in [-1, 1] (scale 0.5,
    # data = 0.5 model + 0.5) the density is 2^-D, log p = -D ln 2
    assert bits_per_dim(torch.tensor([0.0]), 10, scale=1.0).item() == pytest.approx(8.0)
    assert bits_per_dim(torch.tensor([-10 * math.log(2)]), 10, scale=0.5).item() == pytest.approx(8.0)
    # CIFAR-sized: D = 3072, log p = -6000 nats in [-1, 1] coordinates:
    # -(-6000 - 3072 ln 0.5)/(3072 ln 2) + 8 = 6000/2129.348 - 1 + 8 = 9.817764
    # (= Song et al.'s -log p/(D ln 2) + 7)
    assert bits_per_dim(-6000.0, 3072) == pytest.approx(9.817764, abs=1e-6)
    assert bits_per_dim(-6000.0, 3072) == pytest.approx(6000 / (3072 * math.log(2)) + 7)
    # 1 bin less resolution, 1 bit less: 128 levels
    assert bits_per_dim(-6000.0, 3072, bins=128) == pytest.approx(9.817764 - 1, abs=1e-6)


@pytest.mark.parametrize("kw,match", [
    ({"trace": "skilling"}, "trace"), ({"num_probes": 0}, "num_probes"), ({"rtol": 0}, "rtol"),
    ({"atol": -1.0}, "atol"),
])
def test_bad_likelihood_input(kw, match):
    den = MIX2.denoiser(schedules.get("vp"))
    with pytest.raises(DifflabError, match=match):
        log_likelihood(den, torch.zeros(2, 2, dtype=F64), **kw)


def test_bad_bits_per_dim_input():
    with pytest.raises(DifflabError, match="num_dims"):
        bits_per_dim(-1.0, 0)
    with pytest.raises(DifflabError, match="scale"):
        bits_per_dim(-1.0, 3, scale=0)
    with pytest.raises(DifflabError, match="bins"):
        bits_per_dim(-1.0, 3, bins=1)


def test_non_differentiable_denoiser_is_refused():
    inner = MIX2.denoiser(schedules.get("vp"))

    class Frozen:
        schedule = inner.schedule

        def __call__(self, x, t):
            with torch.no_grad():
                return inner(x, t)

    with pytest.raises(DifflabError, match="gradient"):
        log_likelihood(Frozen(), torch.zeros(2, 2, dtype=F64))
