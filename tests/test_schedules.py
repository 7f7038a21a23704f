"""Schedules against float64 closed forms recomputed here with numpy, independently of the code."""

import math

import numpy as np
import pytest

from difflab import schedules
from difflab.errors import DifflabError


def reference_betas(name, T):
    scale = 1000 / T
    if name == "linear":
        return np.linspace(1e-4 * scale, 0.02 * scale, T)
    if name == "quadratic":
        return np.linspace(math.sqrt(1e-4 * scale), math.sqrt(0.02 * scale), T) ** 2
    if name == "cosine":  # Nichol & Dhariwal 2021, Eq. 17, betas clipped at 0.999
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)])
    if name == "sigmoid":
        sig = lambda z: 1 / (1 + math.exp(-z))
        g = lambda u: (sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3))
        return np.array([min(1 - g(t / T) / g((t - 1) / T), 0.999) for t in range(1, T + 1)])
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "quadratic"])
@pytest.mark.parametrize("T", [1000, 50])
def test_tables_match_closed_forms(name, T):
    s = schedules.get(name, T=T)
    beta = reference_betas(name, T)
    alpha_bar = np.concatenate([[1.0], np.cumprod(1 - beta)])
    assert s.betas.dtype == s.alpha_bar.dtype == s.posterior_variance.dtype == __import__("torch").float64
    np.testing.assert_allclose(s.betas[1:].numpy(), beta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.alpha_bar.numpy(), alpha_bar, rtol=1e-12)
    # posterior q(x_{t-1}|x_t,x_0): DDPM Eq. 7, written out per t
    for t in (1, 2, T // 2, T):
        ab, abp, b = alpha_bar[t], alpha_bar[t - 1], beta[t - 1]
        assert s.posterior_variance[t].item() == pytest.approx(b * (1 - abp) / (1 - ab), rel=1e-12, abs=1e-300)
        assert s.posterior_mean_coef_x0[t].item() == pytest.approx(math.sqrt(abp) * b / (1 - ab), rel=1e-12)
        assert s.posterior_mean_coef_xt[t].item() == pytest.approx(math.sqrt(1 - b) * (1 - abp) / (1 - ab), rel=1e-12)
        assert s.log_snr[t].item() == pytest.approx(math.log(ab / (1 - ab)), rel=1e-10)
        assert s.sigma_t[t].item() == pytest.approx(math.sqrt(1 - ab), rel=1e-12)
    assert s.posterior_variance[1].item() == 0.0  # no noise on the last DDPM step


def test_linear_destroys_information_faster_than_cosine():
    lin, cos = schedules.get("linear"), schedules.get("cosine")
    assert lin.alpha_bar[500] < 0.1 < 0.45 < cos.alpha_bar[500]
    assert lin.alpha_bar[1000] < 1e-4 and cos.alpha_bar[1000] < 1e-8


def test_continuous_view_interpolates_between_integer_timesteps():
    s = schedules.get("linear", T=100)
    import torch
    t = torch.tensor([10.0, 10.5, 11.0])
    ab = s.alpha(t) ** 2
    assert ab[0].item() == pytest.approx(s.alpha_bar[10].item(), rel=1e-12)
    assert ab[1].item() == pytest.approx(0.5 * (s.alpha_bar[10] + s.alpha_bar[11]).item(), rel=1e-12)
    assert (s.alpha(t) ** 2 + s.sigma(t) ** 2).sub(1).abs().max() < 1e-12
    lam = s.lambda_(torch.tensor([37]))
    assert lam.item() == pytest.approx(math.log(s.alpha_bar[37] / (1 - s.alpha_bar[37])), rel=1e-12)


@pytest.mark.parametrize("args", [("nope", 1000), ("linear", 0), ("linear", -5), ("linear", 2.5), ("linear", 10)])
def test_bad_schedule_arguments(args):
    with pytest.raises(DifflabError):
        schedules.get(*args)
