"""Samplers against an exact oracle: for data from a 1-D Gaussian mixture, E[x_0 | x_t] has a closed
form (written here from Bayes' rule), so a correct sampler must return the mixture itself."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import difflab
from difflab import schedules
from difflab.denoiser import Prediction
from difflab.errors import DifflabError
from difflab.samplers import spaced_timesteps
from difflab.random import generators_from_seeds

pytestmark = pytest.mark.usefixtures("one_thread")

MEANS, STDS, WEIGHTS = np.array([-1.5, 1.0]), np.array([0.3, 0.5]), np.array([0.3, 0.7])


class MixtureOracle:
    """The exact denoiser of a 1-D Gaussian mixture under x_t = a x_0 + s ε (a² + s² = 1)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, x_t, t):
        t = int(torch.as_tensor(t).reshape(-1)[0])
        ab = float(self.schedule.alpha_bar[t])
        a, s2 = math.sqrt(ab), 1 - ab
        x = x_t.double()
        var = ab * torch.tensor(STDS) ** 2 + s2                      # marginal variance of each component
        logw = torch.log(torch.tensor(WEIGHTS)) - 0.5 * torch.log(var) - 0.5 * (x - a * torch.tensor(MEANS)) ** 2 / var
        r = torch.softmax(logw, dim=-1)                               # responsibilities, x is (B, 1) -> (B, 2)
        post_mean = torch.tensor(MEANS) + a * torch.tensor(STDS) ** 2 / var * (x - a * torch.tensor(MEANS))
        x0 = (r * post_mean).sum(-1, keepdim=True).to(x_t.dtype)
        eps = (x_t - a * x0) / math.sqrt(s2)
        return Prediction(eps=eps, x0=x0)


def mixture_cdf(x):
    return sum(w * stats.norm.cdf(x, m, s) for m, s, w in zip(MEANS, STDS, WEIGHTS))


@pytest.fixture(scope="module")
def oracle():
    return MixtureOracle(schedules.get("linear", T=1000))


def draw(oracle, sampler, steps, n=20_000, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return difflab.sample(oracle, (n, 1), sampler=sampler, steps=steps, generator=g, **kw).double()


@pytest.mark.parametrize("sampler,steps,kw", [
    ("ddpm", 1000, {}),
    ("ddim", 1000, {"eta": 1.0}),
    ("ddim", 100, {"eta": 0.0}),
    ("ddpm", 100, {}),
])
def test_samplers_return_the_data_distribution(oracle, sampler, steps, kw):
    x = draw(oracle, sampler, steps, **kw).numpy().ravel()
    ks = stats.kstest(x, mixture_cdf)
    assert ks.statistic < 0.015, (sampler, steps, ks)


def test_ddim_eta1_full_schedule_equals_ddpm_with_posterior_variance(oracle):
    """DDIM Sec. 4.1: η = 1 on all T steps is DDPM ancestral sampling with σ² = β̃; with the same
    noise the two samplers give the same samples, and independently drawn they agree in law."""
    def run64(sampler, **kw):  # float64 throughout, so the comparison is not blurred by rounding
        g = torch.Generator().manual_seed(5)
        x_T = torch.randn(2000, 1, generator=g, dtype=torch.float64)
        return difflab.sample(oracle, (2000, 1), sampler=sampler, steps=1000, generator=g, x_T=x_T, **kw)

    torch.testing.assert_close(run64("ddpm", variance="beta_tilde"), run64("ddim", eta=1.0), rtol=1e-9, atol=1e-9)
    c = draw(oracle, "ddim", 1000, n=20_000, seed=6, eta=1.0).numpy().ravel()
    d = draw(oracle, "ddpm", 1000, n=20_000, seed=7).numpy().ravel()
    assert stats.ks_2samp(c, d).pvalue > 1e-3


def test_ddim_eta0_is_deterministic_given_x_T(oracle):
    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(3))
    a = difflab.sample(oracle, (64, 1), sampler="ddim", steps=20, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = difflab.sample(oracle, (64, 1), sampler="ddim", steps=20, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = difflab.sample(oracle, (64, 1), sampler="ddim", steps=20, x_T=x_T, eta=0.5, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)


def test_a_sample_reproduces_alone_with_per_sample_generators(oracle):
    seeds = [11, 12, 13, 14, 15]
    batch = difflab.sample(oracle, (5, 1), sampler="ddpm", steps=50, generator=generators_from_seeds(seeds))
    alone = difflab.sample(oracle, (1, 1), sampler="ddpm", steps=50, generator=generators_from_seeds([seeds[3]]))
    torch.testing.assert_close(batch[3:4], alone)


def test_spacings():
    T = 1000
    for spacing in ("trailing", "leading", "linspace"):
        ts = spaced_timesteps(T, 10, spacing)
        assert len(ts) == len(set(ts.tolist())) == 10
        assert all(1 <= int(t) <= T for t in ts) and torch.all(ts[:-1] > ts[1:])
        assert spaced_timesteps(T, T, spacing).tolist() == list(range(T, 0, -1))
    assert spaced_timesteps(T, 10, "trailing").tolist() == [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100]
    assert spaced_timesteps(T, 10, "leading").tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert spaced_timesteps(T, 4, "linspace").tolist() == [1000, 667, 334, 1]


@pytest.mark.parametrize("kw,match", [
    ({"steps": 0}, "steps"), ({"steps": 1001}, "steps"), ({"steps": 2.5}, "steps"),
    ({"sampler": "nope"}, "unknown sampler"), ({"eta": -0.1}, "eta"), ({"foo": 1}, "no option 'foo'"),
    ({"sampler": "ddpm", "variance": "huge"}, "variance"), ({"discretization": "odd"}, "discretization"),
])
def test_bad_sampler_arguments(oracle, kw, match):
    args = {"sampler": "ddim", "steps": 10, **kw}
    with pytest.raises(DifflabError, match=match):
        difflab.sample(oracle, (4, 1), **args)


def test_wrong_generator_count_and_x_T_shape(oracle):
    with pytest.raises(DifflabError, match="generators"):
        difflab.sample(oracle, (4, 1), sampler="ddpm", steps=5, generator=generators_from_seeds([1, 2]))
    with pytest.raises(DifflabError, match="x_T"):
        difflab.sample(oracle, (4, 1), steps=5, x_T=torch.zeros(3, 1))
