"""ModelDenoiser: every parameterization yields the same (ε̂, x̂_0), and clipping stays consistent."""

import pytest
import torch

from difflab import process, schedules
from difflab.denoiser import Denoiser, ModelDenoiser


@pytest.fixture(scope="module")
def setup():
    s = schedules.get("cosine", T=100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64) * 2
    eps = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.full((8,), 40)
    return s, x0, eps, t, process.q_sample(s, x0, t, eps)


class Fixed(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t):
        return self.out


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_parameterizations_agree(setup, param):
    s, x0, eps, t, x_t = setup
    a, sg = s.alpha_t[40].item(), s.sigma_t[40].item()
    out = {"eps": eps, "x0": x0, "v": a * eps - sg * x0}[param]  # written from the definitions
    den = ModelDenoiser(Fixed(out), s, param)
    assert isinstance(den, Denoiser)
    pred = den(x_t, t)
    torch.testing.assert_close(pred.eps, eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pred.x0, x0, rtol=1e-9, atol=1e-9)


def test_clipping_clamps_x0_and_keeps_eps_consistent(setup):
    s, x0, eps, t, x_t = setup
    pred = ModelDenoiser(Fixed(eps), s, "eps", clip_x0=(-1.0, 1.0))(x_t, t)
    assert pred.x0.min() >= -1 and pred.x0.max() <= 1
    torch.testing.assert_close(pred.x0, x0.clamp(-1, 1))
    a, sg = s.alpha_t[40].item(), s.sigma_t[40].item()
    torch.testing.assert_close(a * pred.x0 + sg * pred.eps, x_t)  # x_t = α x̂_0 + σ ε̂ still holds
