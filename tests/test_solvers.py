"""The fast ODE/SDE solvers (euler, heun, dpm_solver, dpmpp_2m/3m/2m_sde, unipc, plms) against
independent references: the exact distribution of a Gaussian mixture (its projections are 1-D mixtures
with closed-form CDFs), a fourth-order Runge–Kutta solution of the probability-flow ODE written here,
the DDIM sampler, the DDPM posterior and numerical quadrature."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import difflab
from difflab import process, schedules
from difflab.errors import DifflabError
from difflab.random import generators_from_seeds
from difflab.samplers import discretize, get, info
from difflab.samplers.dpm_solver import dpmpp_sde_update, exp_integrals
from difflab.toy import GaussianMixture

SOLVERS = ("euler", "heun", "dpm_solver", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "plms")


pytestmark = pytest.mark.usefixtures("one_thread")


def make_schedule(name):
    return {"linear": lambda: schedules.get("linear", T=1000), "vp": lambda: schedules.get("vp"),
            "subvp": lambda: schedules.get("subvp"), "ve": lambda: schedules.get("ve", sigma_max=20.0)}[name]()


# ------------------------------------------------------------------------------------------------
# Convergence in distribution to the oracle's mixture
# ------------------------------------------------------------------------------------------------

MEANS = np.array([[-1.5, -1.0], [1.0, 1.2], [-1.0, 1.3], [1.4, -1.1]])
STDS = np.array([0.2, 0.25, 0.3, 0.2])
WEIGHTS = np.array([0.2, 0.3, 0.25, 0.25])
MIXTURE = GaussianMixture(MEANS, STDS, WEIGHTS)
ANGLES = np.arange(6) * np.pi / 6


def sliced_ks(x: torch.Tensor) -> float:
    """The largest Kolmogorov–Smirnov statistic over six projections θ: the projection of an isotropic
    Gaussian mixture is the 1-D mixture Σ w_k N(⟨μ_k, θ⟩, s_k²), whose CDF is exact (no reference sample)."""
    x = x.double().numpy()
    worst = 0.0
    for a in ANGLES:
        theta = np.array([math.cos(a), math.sin(a)])
        mu = MEANS @ theta
        cdf = lambda y: (WEIGHTS * stats.norm.cdf((np.asarray(y)[:, None] - mu) / STDS)).sum(1)  # noqa: E731
        worst = max(worst, stats.kstest(x @ theta, cdf).statistic)
    return worst


def test_the_distance_resolves_the_mixture():
    """Sanity of the metric: fresh true samples sit at the noise floor, a wrong mixture far above it."""
    g = torch.Generator().manual_seed(0)
    assert sliced_ks(MIXTURE.sample(4000, g)) < 0.03
    wrong = GaussianMixture(MEANS, STDS * 1.5, WEIGHTS)
    assert sliced_ks(wrong.sample(4000, g)) > 0.05


@pytest.mark.parametrize("sampler,schedule,discretization,kw", [
    ("euler", "linear", "karras", {}),
    ("heun", "linear", "karras", {}),
    ("heun", "linear", "karras", {"s_churn": 10.0}),
    ("dpm_solver", "linear", "logsnr", {"order": 2}),
    ("dpm_solver", "linear", "logsnr", {"order": 3}),
    ("dpmpp_2m", "linear", "logsnr", {}),
    ("dpmpp_3m", "linear", "logsnr", {}),
    ("dpmpp_2m_sde", "linear", "logsnr", {}),
    ("unipc", "linear", "logsnr", {}),
    ("plms", "linear", "trailing", {}),
    ("dpmpp_2m", "vp", "logsnr", {}),
    ("heun", "vp", "karras", {}),
    ("unipc", "subvp", "logsnr", {}),
    ("heun", "ve", "karras", {}),
    ("heun", "ve", "karras", {"s_churn": 5.0}),
    ("dpmpp_3m", "ve", "logsnr", {}),
    ("dpm_solver", "ve", "logsnr", {"order": 2}),
    ("dpmpp_2m_sde", "ve", "logsnr", {}),
])
def test_samples_converge_to_the_mixture(sampler, schedule, discretization, kw):
    den = MIXTURE.denoiser(make_schedule(schedule))
    ks = {}
    for steps in (3, 10, 50):
        g = torch.Generator().manual_seed(1)
        x = difflab.sample(den, (4000, 2), sampler=sampler, steps=steps, discretization=discretization, generator=g, **kw)
        assert torch.isfinite(x).all()
        ks[steps] = sliced_ks(x)
    assert ks[50] < 0.03, ks
    assert ks[3] > ks[10] and ks[3] > ks[50] + 0.05, ks


# ------------------------------------------------------------------------------------------------
# Order of accuracy against a Runge–Kutta solution of the probability-flow ODE
# ------------------------------------------------------------------------------------------------

SMOOTH = GaussianMixture([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]], [0.5])  # reaches the asymptotic regime early


def _coefs(schedule, t):
    t = torch.as_tensor(t, dtype=torch.float64).reshape(())
    return float(schedule.alpha(t)), float(schedule.sigma(t))


def rk4_flow(den, x, sigma_from, sigma_to, n, log_spaced):
    """Classic RK4 on the probability-flow ODE dx̃/dσ̃ = ε̂(α x̃, t) in x̃ = x/α, σ̃ = σ/α (Karras et al. 2022,
    Eq. 3 with the scaling of Eq. 4), in u = log σ̃ (dx̃/du = σ̃ ε̂) or in σ̃ itself; t = t_from_lambda(−2 log σ̃).
    Takes and returns x in the model's coordinates."""
    schedule = den.schedule

    def at(sig):
        t = schedule.t_from_lambda(torch.tensor(-2 * math.log(sig), dtype=torch.float64)).reshape(())
        return t, float(schedule.alpha(t))

    def f(xt, v):
        sig = math.exp(v) if log_spaced else v
        t, a = at(sig)
        return den(a * xt, t).eps * (sig if log_spaced else 1.0)

    v0, v1 = (math.log(sigma_from), math.log(sigma_to)) if log_spaced else (sigma_from, sigma_to)
    xt, dv = x / at(sigma_from)[1], (v1 - v0) / n
    for k in range(n):
        v = v0 + k * dv
        k1 = f(xt, v)
        k2 = f(xt + dv / 2 * k1, v + dv / 2)
        k3 = f(xt + dv / 2 * k2, v + dv / 2)
        k4 = f(xt + dv * k3, v + dv)
        xt = xt + dv / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return at(sigma_to)[1] * xt


def state_at_last_time(sampler, den, x_T, timesteps, **kw):
    """The sampler's x at the last visited time (before its step to the data), read by the callback."""
    seen = {}
    get(sampler)(den, x_T, timesteps, callback=lambda i, t, x, pred: seen.__setitem__("x", x), **kw)
    return seen["x"]


@pytest.fixture(scope="module")
def flow_problem():
    """Per schedule: x_T (float64), and the RK4 solution at t_min on the log-SNR grid's end points."""
    problems = {}
    for name in ("linear", "ve"):
        schedule = make_schedule(name)
        den = SMOOTH.denoiser(schedule)
        g = torch.Generator().manual_seed(0)
        grid = discretize(schedule, 8, "logsnr")
        a_max, s_max = _coefs(schedule, grid[0])
        a_min, s_min = _coefs(schedule, grid[-1])
        x_T = torch.randn(64, 2, generator=g, dtype=torch.float64) * s_max
        reference = rk4_flow(den, x_T, s_max / a_max, s_min / a_min, 500, log_spaced=True)
        problems[name] = (den, x_T, reference)
    return problems


def rms(a, b):
    return (a - b).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("sampler,kw,order,schedule", [
    ("euler", {}, None, "linear"),
    ("heun", {}, None, "linear"),
    ("dpm_solver", {"order": 1}, 1, "linear"),
    ("dpm_solver", {"order": 2}, 2, "linear"),
    ("dpm_solver", {}, None, "linear"),
    ("dpmpp_2m", {}, None, "linear"),
    ("dpmpp_3m", {}, None, "linear"),
    ("unipc", {}, None, "linear"),
    ("unipc", {"order": 1}, 2, "linear"),
    ("unipc", {"order": 3}, 4, "linear"),
    ("unipc", {"variant": "bh1"}, 3, "linear"),
    ("heun", {}, None, "ve"),
    ("dpmpp_2m", {}, None, "ve"),
    ("dpmpp_3m", {}, None, "ve"),
    ("unipc", {}, None, "ve"),
])
def test_order_of_accuracy_in_log_snr_steps(flow_problem, sampler, kw, order, schedule):
    """Halving the log-SNR step divides the error at t_min by about 2^order (the registered order
    unless the options change it)."""
    den, x_T, reference = flow_problem[schedule]
    order = info(sampler)["order"] if order is None else order
    errors = [rms(state_at_last_time(sampler, den, x_T, discretize(den.schedule, n, "logsnr"), **kw), reference)
              for n in (32, 64)]
    rate = math.log2(errors[0] / errors[1])
    assert rate > order - 0.7, (errors, rate)
    assert errors[1] < 0.05


@pytest.mark.parametrize("sampler,kw,order", [
    ("plms", {}, 4), ("plms", {"warmup": "improved_euler"}, 3), ("heun", {}, 2), ("euler", {}, 1),
])
def test_order_of_accuracy_with_steps_even_in_sigma(sampler, kw, order):
    """PLMS is the 4-step Adams–Bashforth method in σ̃ = σ/α, so its order shows on steps evenly spaced in
    σ̃ (here σ̃ from 2 to 0.2, on the linear VP schedule); the sampler is called on those times directly."""
    schedule = make_schedule("linear")
    den = SMOOTH.denoiser(schedule)
    g = torch.Generator().manual_seed(0)
    sig_a, sig_b = 2.0, 0.2

    def times(n):
        return schedule.t_from_lambda(-2 * torch.log(torch.linspace(sig_a, sig_b, n + 1, dtype=torch.float64)))

    a_a = _coefs(schedule, times(1)[0])[0]
    x_T = a_a * (SMOOTH.sample(64, g) + sig_a * torch.randn(64, 2, generator=g, dtype=torch.float64))
    reference = rk4_flow(den, x_T, sig_a, sig_b, 200, log_spaced=False)
    errors = [rms(state_at_last_time(sampler, den, x_T, times(n), **kw), reference) for n in (16, 32)]
    rate = math.log2(errors[0] / errors[1])
    assert rate > order - 0.7, (errors, rate)


# ------------------------------------------------------------------------------------------------
# Identities with other samplers and closed forms
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,times", [
    ("linear", None),                                                     # the integer "trailing" grid
    ("linear", [1000.0, 800.5, 600.25, 350.75, 120.125, 40.5, 10.25, 1.0]),
    ("vp", [1.0, 0.75, 0.5, 0.3125, 0.125, 0.0625, 0.03125, 0.001953125]),
    ("ve", [1.0, 0.75, 0.5, 0.3125, 0.125, 0.0625, 0.03125, 0.001953125]),
])
def test_first_order_solvers_are_ddim(schedule, times):
    """DPM-Solver-1 is DDIM (Lu et al. 2022a, Sec. 4.1), and Euler in x/α, σ/α is DDIM too (Song et al.
    2021, DDIM Eq. 14): on the same times they give the same samples, up to round-off. (Fractional times
    are dyadic: DDIM hands Python floats to the schedule and the oracle, which read them in float32.)"""
    den = MIXTURE.denoiser(make_schedule(schedule))
    timesteps = discretize(den.schedule, 12) if times is None else torch.tensor(times, dtype=torch.float64)
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * difflab.samplers.prior_std(den.schedule)
    ddim = get("ddim")(den, x_T, timesteps, eta=0.0)
    torch.testing.assert_close(get("dpm_solver")(den, x_T, timesteps, order=1), ddim, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(get("euler")(den, x_T, timesteps), ddim, rtol=1e-9, atol=1e-9)


def test_unip2_without_corrector_is_dpmpp_2m():
    """With B(h) = 1 − e^{−h} and a_1 = ½, the UniP-2 update is term for term DPM-Solver++(2M)'s."""
    den = MIXTURE.denoiser(make_schedule("linear"))
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = difflab.sample(den, (256, 2), sampler="unipc", steps=15, discretization="logsnr", x_T=x_T, corrector=False)
    b = difflab.sample(den, (256, 2), sampler="dpmpp_2m", steps=15, discretization="logsnr", x_T=x_T)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    c = difflab.sample(den, (256, 2), sampler="unipc", steps=15, discretization="logsnr", x_T=x_T)
    assert not torch.allclose(a, c)


def test_first_order_sde_step_is_the_ddpm_posterior():
    """The SDE-DPM-Solver++ step with x̂_0 held fixed is a draw from q(x_s | x_t, x̂_0): its mean and variance
    match the posterior of the forward process (process.q_posterior_between)."""
    schedule = make_schedule("linear")
    g = torch.Generator().manual_seed(5)
    x_t, x0 = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    t, s = 600, 450
    a_t, s_t = _coefs(schedule, t)
    a_s, s_s = _coefs(schedule, s)
    mean, var = process.q_posterior_between(schedule, x0, x_t, torch.full((8,), t), torch.full((8,), s))
    zero = torch.zeros_like(x_t)
    torch.testing.assert_close(dpmpp_sde_update(x_t, x0, zero, a_t, s_t, a_s, s_s), mean, rtol=1e-10, atol=1e-10)
    one = torch.ones_like(x_t)
    std = dpmpp_sde_update(x_t, x0, one, a_t, s_t, a_s, s_s) - mean
    torch.testing.assert_close(std**2, var.expand_as(std), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("h", [1e-3, 0.05, 0.7, 1.0, 2.5, 9.0])
def test_exp_integrals_match_quadrature(h):
    """I_k(h) = ∫_0^h e^{−(h−τ)} τ^k/k! dτ, checked against numerical quadrature."""
    for k, value in enumerate(exp_integrals(h, 3)):
        expected = integrate.quad(lambda tau: math.exp(-(h - tau)) * tau**k / math.factorial(k), 0, h, epsabs=0, epsrel=1e-13)[0]
        assert value == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# Contract: callbacks, determinism, per-sample generators, metadata
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", SOLVERS)
def test_callback_once_per_step_and_deterministic_solvers_ignore_the_generator(sampler):
    den = MIXTURE.denoiser(make_schedule("linear"))
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(6))
    calls = []
    a = difflab.sample(den, (16, 2), sampler=sampler, steps=7, x_T=x_T, generator=torch.Generator().manual_seed(1),
                       callback=lambda i, t, x, pred: calls.append((i, t, tuple(x.shape), tuple(pred.x0.shape))))
    assert [c[0] for c in calls] == list(range(7)) and all(c[2] == c[3] == (16, 2) for c in calls)
    b = difflab.sample(den, (16, 2), sampler=sampler, steps=7, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) != info(sampler)["stochastic"]
    assert a.dtype == x_T.dtype


@pytest.mark.parametrize("sampler,kw", [("dpmpp_2m_sde", {}), ("heun", {"s_churn": 20.0})])
def test_stochastic_solvers_reproduce_a_sample_alone(sampler, kw):
    den = MIXTURE.denoiser(make_schedule("linear"))
    seeds = [21, 22, 23, 24]
    batch = difflab.sample(den, (4, 2), sampler=sampler, steps=12, generator=generators_from_seeds(seeds), **kw)
    alone = difflab.sample(den, (1, 2), sampler=sampler, steps=12, generator=generators_from_seeds(seeds[2:3]), **kw)
    torch.testing.assert_close(batch[2:3], alone)
    again = difflab.sample(den, (4, 2), sampler=sampler, steps=12, generator=generators_from_seeds([1, 2, 3, 4]), **kw)
    assert not torch.allclose(batch, again)


def test_registered_metadata():
    expected = {"euler": (1, False, 1, 1), "heun": (2, False, 2, 2), "dpm_solver": (3, False, 3, 2),
                "dpmpp_2m": (2, False, 1, 2), "dpmpp_3m": (3, False, 1, 2), "dpmpp_2m_sde": (2, True, 1, 2),
                "unipc": (3, False, 1, 2), "plms": (4, False, 1, 2)}
    for name, (order, stochastic, nfe, min_steps) in expected.items():
        meta = info(name)
        assert (meta["order"], meta["stochastic"], meta["nfe_per_step"], meta["min_steps"]) == (order, stochastic, nfe, min_steps)
        assert meta["summary"]


def test_network_evaluations_per_run():
    """NFE as documented: DPM-Solver-k k(S − 1) + 1, Heun 2S − 1, multistep S, PLMS S + 9 (PRK start) or S + 1;
    Heun and PLMS take one more for the Euler step down to σ̃ = 80 when the schedule starts above it (the linear
    one does, at 157)."""
    den = MIXTURE.denoiser(make_schedule("linear"))

    class Counting:
        schedule = den.schedule

        def __init__(self):
            self.calls = 0

        def __call__(self, x, t):
            self.calls += 1
            return den(x, t)

    steps = 10
    expected = [("dpm_solver", {"order": 3}, 3 * (steps - 1) + 1), ("dpm_solver", {"order": 2}, 2 * (steps - 1) + 1),
                ("heun", {}, 2 * steps), ("heun", {"sigma_max": 1e3}, 2 * steps - 1), ("euler", {}, steps), ("dpmpp_2m", {}, steps), ("dpmpp_3m", {}, steps),
                ("dpmpp_2m_sde", {}, steps), ("unipc", {}, steps), ("plms", {}, steps + 10),
                ("plms", {"sigma_max": 1e3}, steps + 9), ("plms", {"warmup": "improved_euler"}, steps + 2)]
    for sampler, kw, nfe in expected:
        counting = Counting()
        difflab.sample(counting, (8, 2), sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0), **kw)
        assert counting.calls == nfe, (sampler, kw, counting.calls)


def test_few_steps_stay_sane():
    """With lower_order_final the multistep solvers stay sane at 2–5 steps, even on the log-SNR grid where
    each step is huge (singlestep high-order methods, Heun or DPM-Solver-3, are not expected to)."""
    den = MIXTURE.denoiser(make_schedule("linear"))
    for sampler in ("euler", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc"):
        for steps in (2, 3, 5):
            x = difflab.sample(den, (256, 2), sampler=sampler, steps=steps, discretization="logsnr",
                               generator=torch.Generator().manual_seed(0))
            assert torch.isfinite(x).all() and x.abs().max() < 10, (sampler, steps)


@pytest.mark.parametrize("discretization", ["trailing", "karras"])
def test_heun_and_plms_survive_the_cosine_schedules_last_step(discretization):
    """The cosine schedule's last step has σ̃ = σ/α ≈ 2·10⁴; a Heun step from there to t = 900 weighs the end
    slope by σ̃_t/σ̃_s and diverged (mean error 50 at 10 steps). Starting Heun at EDM's σ_max = 80 (an Euler step
    down to it) keeps it near the exact ODE solution, and at 20 steps ahead of Euler, as a second-order method."""
    schedule = schedules.get("cosine", T=1000)
    den = MIXTURE.denoiser(schedule)
    x_T = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = difflab.sample(den, (512, 2), sampler="dpmpp_3m", steps=400, x_T=x_T, discretization="logsnr")

    def error(sampler, steps, **kw):
        x = difflab.sample(den, (512, 2), sampler=sampler, steps=steps, x_T=x_T, discretization=discretization, **kw)
        return float((x - exact).norm(dim=1).mean())

    assert error("heun", 10) < 0.5 and error("plms", 10) < 0.5
    assert error("heun", 20) < error("euler", 20) and error("plms", 20) < error("euler", 20)
    if discretization == "trailing":  # the failures the bound removes
        assert error("heun", 10, sigma_max=1e6) > 10 and error("plms", 10, sigma_max=1e6) > 2


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler,kw,match", [
    ("dpm_solver", {"order": 4}, "order"),
    ("dpm_solver", {"order": 2.0}, "order"),
    ("unipc", {"order": 0}, "order"),
    ("unipc", {"variant": "bh3"}, "variant"),
    ("unipc", {"corrector": "yes"}, "corrector"),
    ("dpmpp_2m", {"lower_order_final": 1}, "lower_order_final"),
    ("heun", {"s_churn": -1.0}, "s_churn"),
    ("heun", {"s_noise": -0.5}, "s_noise"),
    ("heun", {"s_tmax": "big"}, "s_tmax"),
    ("heun", {"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmin <= s_tmax"),
    ("plms", {"warmup": "rk4"}, "warmup"),
    ("dpmpp_3m", {"order": 3}, "no option 'order'"),
    ("euler", {"s_churn": 1.0}, "no option 's_churn'"),
])
def test_bad_options(sampler, kw, match):
    den = MIXTURE.denoiser(make_schedule("linear"))
    with pytest.raises(DifflabError, match=match):
        difflab.sample(den, (4, 2), sampler=sampler, steps=5, **kw)


@pytest.mark.parametrize("sampler", ["heun", "dpm_solver", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "plms"])
def test_fewer_steps_than_the_minimum(sampler):
    den = MIXTURE.denoiser(make_schedule("linear"))
    with pytest.raises(DifflabError, match="at least 2 steps"):
        difflab.sample(den, (4, 2), sampler=sampler, steps=1)
