"""MCMC samplers of difflab.ebm.mcmc against exact answers: the mixture oracle's law, the closed-form acceptance
rates of MALA and HMC on a Gaussian (quadrature), invariance of the target."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from difflab.ebm import mcmc
from difflab.errors import DifflabError
from difflab.toy import GaussianMixture

# two overlapping components, so that a chain crosses between them and its law can be compared with the mixture's
MIX = GaussianMixture([[-0.8, 0.0], [0.8, 0.5]], [0.6, 0.6], [0.3, 0.7])


def sliced_ks(x, mixture, directions=((1, 0), (0, 1), (0.6, 0.8), (0.8, -0.6))):
    """Largest KS statistic over 1-D projections u·x, whose law Σ w_k N(u·μ_k, s_k²) is exact for an isotropic
    mixture and a unit u."""
    worst = 0.0
    for u in directions:
        u = np.asarray(u, dtype=float)
        y = x.double().numpy() @ u
        mu, sd, w = mixture.means.numpy() @ u, mixture.stds.numpy(), mixture.weights.numpy()
        cdf = lambda v, mu=mu, sd=sd, w=w: sum(wk * stats.norm.cdf(v, m, s) for m, s, wk in zip(mu, sd, w))
        worst = max(worst, stats.kstest(y, cdf).statistic)
    return worst


@pytest.mark.parametrize("name,steps,step_size,kw", [
    ("metropolis", 300, 0.9, {}),
    ("langevin", 600, 0.005, {}),
    ("mala", 300, 0.15, {}),
    ("hmc", 60, 0.2, {"leapfrog_steps": 8}),
])
def test_each_sampler_reaches_the_mixture(name, steps, step_size, kw):
    """4,000 chains from N(0, 2² I): their law after the run is the mixture's as closely as 4,000 true draws are
    (the floor: the KS statistic of a true sample of the same size, about 0.015)."""
    g = torch.Generator().manual_seed(0)
    x0 = 2.0 * torch.randn(4000, 2, generator=g, dtype=torch.float64)
    chain = mcmc.get(name)(MIX.log_prob, x0, steps, step_size, generator=g, **kw)
    floor = sliced_ks(MIX.sample(4000, torch.Generator().manual_seed(1)), MIX)
    assert sliced_ks(chain.samples, MIX) < max(0.03, 2 * floor)
    assert 0 < chain.acceptance <= 1
    assert len(chain.trace) == steps


def test_samplers_fail_the_same_check_when_stopped_early():
    """The check above can fail: 3 Metropolis steps from N(0, 2² I) are far from the mixture."""
    g = torch.Generator().manual_seed(0)
    chain = mcmc.metropolis(MIX.log_prob, 2.0 * torch.randn(4000, 2, generator=g, dtype=torch.float64), 3, 0.9, g)
    assert sliced_ks(chain.samples, MIX) > 0.05


def _expected_acceptance(log_ratio) -> float:
    """E[min(1, exp(log_ratio(x, z)))] for x, z independent N(0, 1), by the trapezoid rule on [−9, 9]²."""
    u = np.linspace(-9, 9, 1801)
    x, z = np.meshgrid(u, u, indexing="ij")
    dens = np.exp(-0.5 * (x**2 + z**2)) / (2 * math.pi)
    f = np.minimum(1.0, np.exp(np.minimum(log_ratio(x, z), 50.0))) * dens
    return float(np.trapezoid(np.trapezoid(f, u, axis=1), u))


def _mala_log_ratio(tau):
    """MALA on N(0, 1): x' = (1 − τ) x + √(2τ) z; log [p(x') q(x|x') / (p(x) q(x'|x))] with
    q(a|b) = N(a; (1 − τ) b, 2τ)."""
    def f(x, z):
        xp = (1 - tau) * x + math.sqrt(2 * tau) * z
        return -0.5 * xp**2 + 0.5 * x**2 - ((x - (1 - tau) * xp) ** 2 - (xp - (1 - tau) * x) ** 2) / (4 * tau)
    return f


def _hmc_log_ratio(eps):
    """HMC with one leapfrog step on N(0, 1), momentum p = z: p½ = p − (ε/2) x, x' = x + ε p½, p' = p½ − (ε/2) x';
    log ratio −ΔH = H(x, p) − H(x', p')."""
    def f(x, p):
        ph = p - 0.5 * eps * x
        xp = x + eps * ph
        pp = ph - 0.5 * eps * xp
        return 0.5 * (x**2 + p**2) - 0.5 * (xp**2 + pp**2)
    return f


@pytest.mark.parametrize("name,step,reference", [
    ("mala", 0.3, _mala_log_ratio(0.3)), ("mala", 1.2, _mala_log_ratio(1.2)),
    ("hmc", 0.8, _hmc_log_ratio(0.8)), ("hmc", 1.6, _hmc_log_ratio(1.6)),
])
def test_acceptance_rate_equals_its_closed_form_on_a_gaussian(name, step, reference):
    """Chains started in N(0, 1) stay there, so each step's acceptance probability is E[min(1, ratio)] over the
    stationary state and the proposal noise, a 2-D integral; the measured rate agrees within 4 binomial standard
    errors, and it falls as the step size grows."""
    g = torch.Generator().manual_seed(5)
    n, steps = 20_000, 5
    x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    log_prob = lambda x: -0.5 * x[:, 0] ** 2
    kw = {"leapfrog_steps": 1} if name == "hmc" else {}
    chain = mcmc.get(name)(log_prob, x0, steps, step, generator=g, **kw)
    want = _expected_acceptance(reference)
    assert chain.acceptance == pytest.approx(want, abs=4 * math.sqrt(want * (1 - want) / (n * steps)) + 1e-3)


def test_acceptance_falls_as_the_step_grows():
    g = torch.Generator().manual_seed(0)
    x0 = MIX.sample(2000, g)
    for name in ("metropolis", "mala", "hmc"):
        rates = [mcmc.get(name)(MIX.log_prob, x0, 20, s, generator=g).acceptance for s in (0.05, 0.5, 2.0)]
        assert rates[0] > rates[1] > rates[2], (name, rates)


@pytest.mark.parametrize("name", ["metropolis", "mala", "hmc"])
def test_metropolis_corrected_samplers_leave_the_target_invariant(name):
    """Started at exact draws of N(0.5, 0.8²), large steps (where an uncorrected kernel would drift: ULA at τ = 0.6
    inflates the variance by 1/(1 − τ/(2v)) ≈ 1.9) keep mean and variance within their sampling error."""
    g = torch.Generator().manual_seed(2)
    m, s, n = 0.5, 0.8, 40_000
    x0 = m + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    log_prob = lambda x: -0.5 * ((x[:, 0] - m) / s) ** 2
    x = mcmc.get(name)(log_prob, x0, 10, 0.6, generator=g).samples
    assert float(x.mean()) == pytest.approx(m, abs=5 * s / math.sqrt(n))
    assert float(x.var()) / s**2 == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))
    ula = mcmc.langevin(log_prob, x0, 10, 0.6, generator=g).samples
    assert float(ula.var()) / s**2 > 1.5  # the uncorrected kernel fails the same check


def test_a_seed_reproduces_a_chain():
    x0 = torch.zeros(10, 2, dtype=torch.float64)
    a = mcmc.hmc(MIX.log_prob, x0, 5, 0.3, generator=torch.Generator().manual_seed(7)).samples
    b = mcmc.hmc(MIX.log_prob, x0, 5, 0.3, generator=torch.Generator().manual_seed(7)).samples
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(mcmc.SAMPLERS))
@pytest.mark.parametrize("step", [0.0, -0.1, float("nan"), "big"])
def test_a_step_size_that_is_not_positive_is_refused(name, step):
    with pytest.raises(DifflabError, match="step size must be a finite number > 0"):
        mcmc.get(name)(MIX.log_prob, torch.zeros(3, 2), 2, step)


def test_an_energy_that_is_not_one_number_per_chain_is_refused():
    with pytest.raises(DifflabError, match=r"one number per chain, shape \(3,\), got \(3, 2\)"):
        mcmc.mala(lambda x: -x**2, torch.zeros(3, 2), 2, 0.1)


def test_a_nan_energy_mid_chain_stops_with_the_step():
    """A density that turns NaN outside |x| < 3: HMC with a huge step leaves that region on its first step."""
    log_prob = lambda x: torch.where(x.abs().amax(1) < 3, -0.5 * (x**2).sum(1), torch.full_like(x[:, 0], float("nan")))
    with pytest.raises(DifflabError, match="NaN or infinite for .* chains at MCMC step 1"):
        mcmc.hmc(log_prob, torch.zeros(4, 2), 5, 10.0, generator=torch.Generator().manual_seed(0))


def test_an_unknown_sampler_is_named():
    with pytest.raises(DifflabError, match="unknown MCMC sampler 'gibbs'; expected one of metropolis, langevin, mala, hmc"):
        mcmc.get("gibbs")
