"""L_simple against closed-form expectations: with a network that outputs zero, the loss is the
mean square of the target, whose expectation over t ~ U{1..T} is known for ε, x_0 and v."""

import pytest
import torch

from difflab import schedules
from difflab.denoiser import ModelDenoiser
from difflab.objectives import l_simple, uniform_timesteps


class Zero(torch.nn.Module):
    def forward(self, x, t):
        self.seen_t = t
        return torch.zeros_like(x)


@pytest.fixture(scope="module")
def sched():
    return schedules.get("linear", T=1000)


def test_timesteps_are_uniform_on_1_to_T(sched):
    t = uniform_timesteps(sched, 200_000, torch.Generator().manual_seed(0))
    assert t.min() == 1 and t.max() == sched.T
    counts = torch.bincount(t, minlength=sched.T + 1)[1:].double()
    assert counts.std() / counts.mean() < 0.2 and abs(t.double().mean().item() - 500.5) < 2


@pytest.mark.parametrize("param", ["eps", "x0", "v", "score"])
def test_zero_network_loss_is_mean_square_of_target(sched, param):
    g = torch.Generator().manual_seed(1)
    n, c = 100_000, 1.5
    x0 = torch.full((n, 2), c, dtype=torch.float64)
    model = Zero()
    loss = l_simple(ModelDenoiser(model, sched, param), x0, g).mean().item()
    ab = sched.alpha_bar[1:]
    # E v² = ᾱ + (1 − ᾱ) c²; the σ²-weighted score loss of a zero network is E ε² = 1
    expected = {"eps": 1.0, "x0": c**2, "v": (ab + (1 - ab) * c**2).mean().item(), "score": 1.0}[param]
    assert loss == pytest.approx(expected, rel=0.02)
    assert model.seen_t.min() >= 1 and model.seen_t.max() <= sched.T


def test_perfect_network_has_zero_loss(sched):
    """A network that knows ε (it reads it from x_t and the fixed x_0) scores exactly zero."""
    x0 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    class Oracle(torch.nn.Module):
        def forward(self, x_t, t):
            return (x_t - sched.at(sched.alpha_t, t.long(), x_t) * x0) / sched.at(sched.sigma_t, t.long(), x_t)

    loss = l_simple(ModelDenoiser(Oracle(), sched, "eps"), x0, torch.Generator().manual_seed(3))
    assert loss.shape == (64,) and loss.max().item() < 1e-20
