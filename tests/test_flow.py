"""Flow matching on the one core (Lipman et al. 2023; Liu et al. 2023): the straight path as a schedule, a velocity
network as a parameterization, its loss minimised by the exact mixture denoiser, the ODE likelihood of the exact
flow, and the preset that trains on a toy and samples near the modes with every family of sampler."""

from __future__ import annotations

import math

import pytest
import torch

from difflab import process, schedules
from difflab.denoiser import ModelDenoiser, VelocityPreconditioning
from difflab.likelihood import log_likelihood
from difflab.objectives import l_simple, logit_normal_timesteps, uniform_timesteps
from difflab.toy import GaussianMixture

F64 = torch.float64
MIX = GaussianMixture([[-1.2, 0.8], [1.0, -0.6], [0.3, 1.5]], [0.35, 0.5, 0.3], [0.3, 0.5, 0.2])


@pytest.fixture(scope="module")
def flow():
    return schedules.get("flow")


def test_the_straight_path_and_its_log_snr(flow):
    t = torch.tensor([0.001, 0.2, 0.5, 0.8, 0.999], dtype=F64)
    torch.testing.assert_close(flow.alpha(t), 1 - t, rtol=1e-12, atol=0)
    torch.testing.assert_close(flow.sigma(t), t, rtol=1e-12, atol=0)
    torch.testing.assert_close(flow.t_from_lambda(flow.lambda_(t)), t, rtol=1e-10, atol=0)
    x0, eps = torch.randn(5, 3, dtype=F64), torch.randn(5, 3, dtype=F64)
    torch.testing.assert_close(process.q_sample(flow, x0, t, eps), (1 - t)[:, None] * x0 + t[:, None] * eps)
    # its marginal at t = 0.4 from the schedule against the closed form: mean (1 − t) E[x_0], covariance
    # (1 − t)² Cov[x_0] + t² I, with the mixture's moments Σ w μ and Σ w (s² I + μ μᵀ) − E E ᵀ
    n, tt = 200000, 0.4
    g = torch.Generator().manual_seed(0)
    x = process.q_sample(flow, MIX.sample(n, g), torch.full((n,), tt, dtype=F64), torch.randn(n, 2, generator=g, dtype=F64))
    w, mu, sd = MIX.weights, MIX.means, MIX.stds
    mean0 = (w[:, None] * mu).sum(0)
    cov0 = sum(w[k] * (sd[k] ** 2 * torch.eye(2, dtype=F64) + torch.outer(mu[k], mu[k])) for k in range(3)) - torch.outer(mean0, mean0)
    torch.testing.assert_close(x.mean(0), (1 - tt) * mean0, rtol=0, atol=0.01)
    torch.testing.assert_close(torch.cov(x.T), (1 - tt) ** 2 * cov0 + tt**2 * torch.eye(2, dtype=F64), rtol=0, atol=0.01)


def test_the_velocity_target_and_its_inverse(flow):
    pre = VelocityPreconditioning(flow)
    g = torch.Generator().manual_seed(1)
    t = 0.001 + 0.998 * torch.rand(50, generator=g, dtype=F64)
    x0, eps = torch.randn(50, 2, generator=g, dtype=F64), torch.randn(50, 2, generator=g, dtype=F64)
    u = pre.target(x0, t, eps)
    torch.testing.assert_close(u, eps - x0, rtol=1e-7, atol=1e-9)  # d/dt [(1 − t) x_0 + t ε]
    pred = pre.prediction(process.q_sample(flow, x0, t, eps), t, u)
    torch.testing.assert_close(pred.x0, x0, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(pred.eps, eps, rtol=1e-7, atol=1e-8)


class OracleVelocity(torch.nn.Module):
    """û = ε* − x_0* of the exact mixture denoiser, read back from what the network is given (x_in = c_in x_t,
    time = 999 t)."""

    def __init__(self, schedule, shift=None):
        super().__init__()
        self.schedule, self.oracle, self.shift = schedule, MIX.denoiser(schedule), shift

    def forward(self, x_in, time):
        t = time.double() / 999
        x_t = x_in.double() / self.schedule.input_scale(t)[:, None]
        pred = [self.oracle(x_t[i:i + 1], t[i]) for i in range(len(t))]
        u = torch.cat([p.eps - p.x0 for p in pred])
        return u if self.shift is None else u + self.shift


def test_the_exact_flow_minimises_the_flow_matching_loss(flow):
    g = torch.Generator().manual_seed(2)
    n = 1500
    x0 = MIX.sample(n, g)
    t = uniform_timesteps(flow, n, g)
    eps = torch.randn(n, 2, generator=g, dtype=F64)
    d = torch.randn(n, 2, generator=g, dtype=F64)

    def loss(shift):
        return l_simple(ModelDenoiser(OracleVelocity(flow, shift), flow, "velocity"), x0, t=t, eps=eps).mean()

    at = float(loss(None))
    assert at < float(loss(0.1 * d)) and at < float(loss(-0.1 * d))
    den = ModelDenoiser(OracleVelocity(flow), flow, "velocity")
    x_t = process.q_sample(flow, x0, t, eps)
    linear = ((den.network(x_t, t).double() - den.preconditioning.target(x0, t, eps)) * d).sum(1)
    assert abs(float(linear.mean())) < 3 * float(linear.std()) / math.sqrt(n)


def test_the_ode_likelihood_of_the_exact_flow_is_the_mixtures_density(flow):
    x0 = MIX.sample(64, torch.Generator().manual_seed(3))
    logp, _ = log_likelihood(MIX.denoiser(flow), x0)
    exact = MIX.log_prob(x0)
    assert float((logp.mean() - exact.mean()).abs()) < 0.01 * float(exact.mean().abs())


def test_logit_normal_times(flow):
    t = logit_normal_timesteps(flow, 20000, torch.Generator().manual_seed(4))
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean())) < 0.03 and abs(float(logit.std()) - 1) < 0.03
    assert float(t.min()) >= flow.t_min and float(t.max()) <= flow.t_max


def test_the_flow_preset_trains_and_every_sampler_family_finds_the_modes(train_toy, fraction_near_modes):
    import difflab

    run = difflab.load(train_toy("8gaussians-flow", 2000))
    for sampler, steps in (("ddim", 50), ("heun", 18), ("dpmpp_2m", 20), ("ddpm", 100), ("ode", 20)):
        near = fraction_near_modes(run, sampler, steps)
        assert near > 0.9, (sampler, near)
