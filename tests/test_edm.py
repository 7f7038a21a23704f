"""EDM's preconditioning (Karras et al. 2022, Table 1) as a parameterization of the one denoiser path: its scalings
against the paper's table, its loss minimised by the exact Gaussian-mixture denoiser, and the preset that trains
it on a toy and samples near the modes with every family of sampler."""

from __future__ import annotations

import math

import pytest
import torch

from difflab import schedules
from difflab.denoiser import EDMPreconditioning, ModelDenoiser
from difflab.errors import DifflabError
from difflab.objectives import l_simple, lognormal_timesteps
from difflab.toy import GaussianMixture

SIGMA_DATA = 0.5


@pytest.fixture(scope="module")
def ve():
    return schedules.get("ve", **{"sigma_min": 0.002, "sigma_max": 80.0})


def test_scalings_are_the_papers_table(ve):
    pre = EDMPreconditioning(ve, SIGMA_DATA)
    t = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    x = torch.zeros(4, 2, dtype=torch.float64)
    a, sigma, c_skip, c_out, c_in, c_noise = (v.flatten() for v in pre.scalings(t, x))
    s = 0.002 * (80 / 0.002) ** t  # σ(t) of the VE schedule, α = 1
    sd = SIGMA_DATA
    torch.testing.assert_close(sigma, s, rtol=1e-12, atol=0)
    torch.testing.assert_close(c_skip, sd**2 / (s**2 + sd**2), rtol=1e-12, atol=0)
    torch.testing.assert_close(c_out, s * sd / torch.sqrt(s**2 + sd**2), rtol=1e-12, atol=0)
    torch.testing.assert_close(c_in, 1 / torch.sqrt(s**2 + sd**2), rtol=1e-12, atol=0)
    torch.testing.assert_close(c_noise, torch.log(s) / 4, rtol=1e-12, atol=0)
    # the loss weight λ(σ) = (σ² + σ_d²)/(σ σ_d)² (Eq. 8) is 1/c_out²: the F-space error carries it
    torch.testing.assert_close(1 / c_out**2, (s**2 + sd**2) / (s * sd) ** 2, rtol=1e-12, atol=0)
    x_in, label = pre.inputs(torch.ones(4, 2), t)
    torch.testing.assert_close(x_in[:, 0].double(), c_in, rtol=1e-6, atol=0)
    torch.testing.assert_close(label.double(), EDMPreconditioning.NOISE_LABEL_SCALE * c_noise, rtol=1e-6, atol=1e-4)


def test_sigma_data_must_be_positive(ve):
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(DifflabError, match="sigma_data"):
            EDMPreconditioning(ve, bad)


class OracleF(torch.nn.Module):
    """The F of the exact mixture denoiser: reads σ back from its noise label and x̃ from c_in x̃, asks the oracle
    for x_0*, and returns (x_0* − c_skip x̃)/c_out."""

    def __init__(self, mixture, schedule, shift=None):
        super().__init__()
        self.oracle, self.pre, self.shift = mixture.denoiser(schedule), EDMPreconditioning(schedule, SIGMA_DATA), shift

    def forward(self, x_in, label):
        sigma = torch.exp(4 * label.double() / EDMPreconditioning.NOISE_LABEL_SCALE)
        x_tilde = x_in.double() * torch.sqrt(sigma**2 + SIGMA_DATA**2)[:, None]
        t = self.pre.schedule.t_from_lambda(-2 * torch.log(sigma))
        x0 = torch.stack([self.oracle(x_tilde[i:i + 1], t[i]).x0[0] for i in range(len(t))])
        _, _, c_skip, c_out, _, _ = self.pre.scalings(t, x_tilde)
        f = (x0 - c_skip * x_tilde) / c_out
        return f if self.shift is None else f + self.shift


def test_the_exact_denoiser_minimises_the_edm_loss(ve):
    """At the oracle the loss is lowest and flat: shifting F by δ d raises it by ≈ δ² E‖d‖², with no linear term."""
    mixture = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.2])
    g = torch.Generator().manual_seed(0)
    n = 1500
    x0 = mixture.sample(n, g)
    t = lognormal_timesteps(ve, n, g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    direction = torch.randn(n, 2, generator=g, dtype=torch.float64)

    def loss(shift):
        den = ModelDenoiser(OracleF(mixture, ve, shift), ve, "edm", sigma_data=SIGMA_DATA)
        return l_simple(den, x0, t=t, eps=eps)

    at = loss(None)
    assert float(at.mean()) < float(loss(0.1 * direction).mean()) and float(at.mean()) < float(loss(-0.1 * direction).mean())
    # the linear term 2 E[(F* − F_target)·d] vanishes: within 3 standard errors of 0
    den = ModelDenoiser(OracleF(mixture, ve), ve, "edm", sigma_data=SIGMA_DATA)
    x_t = x0 + ve.sigma(t)[:, None] * eps  # α = 1 on a VE schedule
    residual = den.network(x_t, t).double() - den.preconditioning.target(x0, t, eps).double()
    linear = (residual * direction).sum(1)
    assert abs(float(linear.mean())) < 3 * float(linear.std()) / math.sqrt(n)
    # and the denoiser built on it returns the oracle's x_0 exactly (the output round-trips through c_skip, c_out)
    for i in range(8):
        got = den.predict(x_t[i:i + 1], t[i]).x0
        torch.testing.assert_close(got, mixture.denoiser(ve)(x_t[i:i + 1], t[i]).x0, rtol=1e-5, atol=1e-6)


def test_lognormal_times_give_the_papers_sigma_distribution(ve):
    t = lognormal_timesteps(ve, 20000, torch.Generator().manual_seed(1))
    ln_sigma = torch.log(ve.sigma(t))
    inside = (ln_sigma > math.log(0.002) + 1e-9) & (ln_sigma < math.log(80) - 1e-9)  # the clamp aside
    assert abs(float(ln_sigma[inside].mean()) + 1.2) < 0.05 and abs(float(ln_sigma[inside].std()) - 1.2) < 0.05


def test_the_edm_preset_trains_and_every_sampler_family_finds_the_modes(train_toy, fraction_near_modes):
    import difflab

    run = difflab.load(train_toy("8gaussians-edm", 2000))
    for sampler, steps in (("heun", 18), ("ddim", 30), ("dpmpp_2m", 20), ("euler", 40), ("ddpm", 100)):
        near = fraction_near_modes(run, sampler, steps)
        assert near > 0.9, (sampler, near)
