"""Variational diffusion models (Kingma et al. 2021): the monotone learned γ(t), the schedule it defines, the
continuous-time bound L_∞ against its closed form for Gaussian data (and its invariance to the schedule's shape,
Eq. 19), the discrete bound of Eq. 13 converging to it as steps grow, the variance gradient, and a digits run that
trains, samples and reports its bound."""

from __future__ import annotations

import math

import pytest
import torch

from difflab import schedules
from difflab.continuous_bound import diffusion_loss, gamma_and_slope, prior_loss, reconstruction_loss
from difflab.models.vdm import MonotoneGamma
from difflab.objectives import antithetic_timesteps
from difflab.toy import GaussianMixture

F64 = torch.float64


def _perturbed(seed: int, gamma_min: float = -10.0, gamma_max: float = 6.0) -> MonotoneGamma:
    """A γ whose shape parameters are random (far from the linear start), with the given ends."""
    g = MonotoneGamma(gamma_min, gamma_max, hidden=64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("raw_w1", "raw_w2", "b2", "raw_w3"):
            p = getattr(g, name)
            p.copy_(3 * torch.randn(p.shape, generator=gen))
    return g


@pytest.mark.parametrize("seed", range(5))
def test_gamma_is_monotone_with_its_ends(seed):
    g = _perturbed(seed)
    t = torch.linspace(0, 1, 2001, dtype=F64)
    values = g(t).detach()
    assert bool((values[1:] >= values[:-1]).all())
    assert float(values[0]) == pytest.approx(-10.0, abs=1e-9) and float(values[-1]) == pytest.approx(6.0, abs=1e-6)


def test_the_learned_schedule_is_variance_preserving_with_log_snr_minus_gamma():
    sched = schedules.get("learned")
    sched.gamma = _perturbed(0)
    t = torch.linspace(0.01, 1, 50, dtype=F64)
    gamma = sched.gamma(t).detach()
    torch.testing.assert_close(sched.alpha(t) ** 2 + sched.sigma(t) ** 2, torch.ones(50, dtype=F64))
    torch.testing.assert_close(sched.lambda_(t), -gamma)
    torch.testing.assert_close(sched.t_from_lambda(-gamma), t, rtol=1e-7, atol=1e-9)
    assert float(sched.alpha(0.0)) == 1 and float(sched.sigma(0.0)) == 0  # t = 0 is the data, as for every schedule


def test_the_slope_is_the_derivative_of_gamma():
    g = _perturbed(1)
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    _, slope, _ = gamma_and_slope(g, t, variance=False)
    h = 1e-6
    numeric = (g(t + h) - g(t - h)).detach() / (2 * h)
    torch.testing.assert_close(slope.detach(), numeric, rtol=1e-5, atol=1e-6)


def _l_infinity(gamma: MonotoneGamma, mix: GaussianMixture, n: int, seed: int) -> float:
    """L_∞ of the exact denoiser of ``mix`` under γ, Monte Carlo over x, ε and antithetic t (nats per example)."""
    sched = schedules.get("learned")
    sched.gamma = gamma
    gen = torch.Generator().manual_seed(seed)
    x = mix.sample(n, gen)
    eps = torch.randn(x.shape, generator=gen, dtype=F64)
    t = antithetic_timesteps(sched, n, gen).clamp(min=1e-9)
    g_t, slope, _ = gamma_and_slope(gamma, t, variance=False)
    a, s = torch.sigmoid(-g_t).sqrt()[:, None], torch.sigmoid(g_t).sqrt()[:, None]
    z = (a * x + s * eps).detach()
    pred = mix.denoiser(sched)(z, t)
    return float(diffusion_loss(slope.detach(), eps, pred.eps).mean())


def test_l_infinity_is_its_closed_form_and_depends_on_the_ends_only():
    """Data N(μ, s² I) in D dimensions with the exact ε̂: E‖ε − ε̂‖² = D SNR/(SNR + 1/s²), so
    L_∞ = ½ ∫ γ' D SNR/(SNR + 1/s²) dt = ½ D log((SNR(0) + 1/s²)/(SNR(1) + 1/s²)) whatever γ's shape (Eq. 19)."""
    dim, s = 3, 0.4
    mix = GaussianMixture([[0.3, -0.2, 0.5]], [s], [1.0])
    want = 0.5 * dim * math.log((math.exp(10.0) + 1 / s**2) / (math.exp(-6.0) + 1 / s**2))
    for seed in (0, 1, 2):  # three different shapes, the same ends
        got = _l_infinity(_perturbed(seed), mix, 40000, seed)
        assert got == pytest.approx(want, rel=0.03), seed


def test_the_discrete_bound_converges_to_l_infinity():
    """Kingma et al. 2021, Eq. 13: with T steps, L_T = (T/2) E_i[(SNR(s_i) − SNR(t_i)) ‖x − x̂(z_{t_i})‖²], s_i = t_i − 1/T,
    an upper bound that decreases to L_∞ as T grows (Sec. 3.5, Eq. 15); here with the exact x̂ for Gaussian data."""
    dim, s = 2, 0.5
    mix = GaussianMixture([[0.0, 1.0]], [s], [1.0])
    gamma = _perturbed(3)
    sched = schedules.get("learned")
    sched.gamma = gamma
    l_inf = 0.5 * dim * math.log((math.exp(10.0) + 1 / s**2) / (math.exp(-6.0) + 1 / s**2))
    gen = torch.Generator().manual_seed(0)
    bounds = {}
    for T in (10, 100, 1000):
        n = 60000
        i = torch.randint(1, T + 1, (n,), generator=gen)
        t, s_ = i.double() / T, (i.double() - 1) / T
        snr = lambda u: torch.exp(-gamma(u).detach())  # noqa: E731
        x = mix.sample(n, gen)
        g_t = gamma(t).detach()
        z = torch.sigmoid(-g_t).sqrt()[:, None] * x + torch.sigmoid(g_t).sqrt()[:, None] * torch.randn(n, dim, generator=gen, dtype=F64)
        x_hat = mix.denoiser(sched)(z, t).x0
        bounds[T] = float(T / 2 * ((snr(s_) - snr(t)) * (x - x_hat).pow(2).sum(1)).mean())
    assert bounds[10] > bounds[100] > l_inf * 0.98
    assert bounds[1000] == pytest.approx(l_inf, rel=0.03)


def test_prior_and_reconstruction_terms():
    """The prior KL against N(α_1 x, σ_1²) by its formula; reconstruction: from z_0 exactly at the image, at VDM's
    SNR e^13.3, the nearest other level is 6 σ_0/α_0 away, so the cost is about 2 e^−18 nats per pixel; at a low SNR
    every level is almost as likely (log 256 nats per pixel)."""
    x = torch.tensor([[-1.0, 0.0, 1.0]], dtype=F64)
    g1 = torch.tensor(5.0, dtype=F64)
    a2, s2 = torch.sigmoid(-g1), torch.sigmoid(g1)
    want = 0.5 * float((s2 + a2 * x.pow(2) - 1 - torch.log(s2)).sum())
    assert float(prior_loss(g1, x)) == pytest.approx(want, rel=1e-12)
    levels = torch.tensor([[-1.0, 2 * 100 / 255 - 1, 1.0]], dtype=F64)
    var = math.exp(-13.3)  # σ_0²/α_0² = sigmoid(γ_0)/sigmoid(−γ_0) = e^γ_0
    one_level = math.exp(-((2 / 255) ** 2) / (2 * var))
    want = 2 * math.log1p(one_level) + math.log1p(2 * one_level)  # the end levels have one neighbour, the middle two
    got = float(reconstruction_loss(torch.tensor(-13.3, dtype=F64), levels, torch.zeros(1, 3, dtype=F64)))
    assert got == pytest.approx(want, rel=1e-6)
    flat = float(reconstruction_loss(torch.tensor(20.0, dtype=F64), levels, torch.zeros(1, 3, dtype=F64)))
    assert flat == pytest.approx(3 * math.log(256), rel=1e-3)


def test_the_variance_gradient_is_the_gradient_of_the_squared_loss():
    """The shape of γ receives ∂E[L_∞²]/∂η (Kingma et al. 2021, Sec. 5.2), the ends ∂E[L_∞]/∂(γ_0, γ_1)."""
    from difflab.continuous_bound import variance_gradient

    gamma = _perturbed(4)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=F64)

    def loss_terms(variance: bool):
        shape = gamma.shape(t.requires_grad_(True))
        slope = torch.autograd.grad(shape.sum(), t, create_graph=True)[0]
        weight = None
        if variance:
            shape, slope, weight = variance_gradient(shape, slope)
        losses = slope * (1 + shape) ** 2  # any per-example function of (γ̃, γ̃')
        if weight is not None:
            weight.copy_(2 * losses.detach())
        return losses

    gamma.zero_grad()
    loss_terms(True).sum().backward()
    got = gamma.raw_w2.grad.clone()
    gamma.zero_grad()
    loss_terms(False).pow(2).sum().backward()
    torch.testing.assert_close(got, gamma.raw_w2.grad)


def test_a_vdm_run_trains_samples_and_reports_its_bound(tmp_path):
    import difflab
    from difflab.cli.main import main
    from difflab.config import resolve
    from difflab.training.diffusion import train

    cfg = resolve({"preset": "digits", "data": {"num": 256}, "diffusion": {"formulation": "vdm"},
                   "train": {"steps": 60, "log_every": 20, "save_every": 60, "sample_every": 0, "num_samples": 16}})
    out = train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    losses = [float(r.split(",")[1]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0]
    run = difflab.load(out)
    t = torch.linspace(0, 1, 101, dtype=F64)
    gam = run.schedule.gamma(t).detach()
    assert bool((gam[1:] >= gam[:-1]).all())
    x = run.sample(8, steps=20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert main(["likelihood", str(out), "--method", "vlb", "--num", "32", "--out", str(tmp_path / "b.json")]) == 0
    import json
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["bound"].startswith("continuous") and 0 < r["mean"] < 20
    assert r["mean"] == pytest.approx(r["prior_bpd"] + r["reconstruction_bpd"] + r["diffusion_bpd"], rel=1e-6)
