"""The variational bound (DDPM Sec. 3.3, IDDPM Sec. 3) and the timestep samplers (IDDPM Sec. 3.3),
against references written here in float64 NumPy / SciPy: closed-form Gaussian KLs, numerical
integration, Monte Carlo, normal CDF differences, and the DDPM posterior recomputed from β."""

import math
from collections import deque

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from difflab import schedules
from difflab.denoiser import ModelDenoiser
from difflab.errors import DifflabError
from difflab.timestep_sampling import LossSecondMomentSampler, UniformSampler
from difflab.timestep_sampling import get as get_sampler
from difflab.variational_bound import (approx_standard_normal_cdf, discretized_gaussian_log_likelihood, full_bound,
                                       hybrid_losses, l_hybrid, l_vlb, learned_log_variance, model_mean_from_eps,
                                       model_predictor, normal_kl, prior_bpd, split_output, vlb_term)

T = 50
LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def sched():
    return schedules.get("linear", T=T)


def np_tables():
    """β, ᾱ, ᾱ_{t−1}, β̃ and the posterior mean coefficients for t = 1..T at index t (index 0 unused),
    recomputed from the DDPM formulas (Eqs. 4, 7) with the 1000/T-scaled linear β."""
    betas = np.concatenate([[0.0], np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)])
    ab = np.cumprod(1.0 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        beta_tilde = betas * (1 - ab_prev) / (1 - ab)
        c0 = np.sqrt(ab_prev) * betas / (1 - ab)
        ct = np.sqrt(1 - betas) * (1 - ab_prev) / (1 - ab)
    return betas, ab, ab_prev, beta_tilde, c0, ct


def np_gauss_kl(m1, v1, m2, v2):
    """KL(N(m1, v1) ‖ N(m2, v2)) written with standard deviations."""
    s1, s2 = np.sqrt(v1), np.sqrt(v2)
    return np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def np_decoder_logp(x, mean, scale, bins=256):
    """log P(bin of x) with scipy's Φ; the edge bins reach ±∞. Bins above the mean use 1 − Φ (scipy's
    survival function), so the difference does not cancel."""
    h = 1.0 / (bins - 1)
    lo = np.where(x <= -1 + h / 2, -np.inf, x - h)
    hi = np.where(x >= 1 - h / 2, np.inf, x + h)
    above = lo > mean
    with np.errstate(divide="ignore"):
        return np.log(np.where(above, stats.norm.sf(lo, mean, scale) - stats.norm.sf(hi, mean, scale),
                               stats.norm.cdf(hi, mean, scale) - stats.norm.cdf(lo, mean, scale)))


def grid_images(shape, seed, bins=256):
    rng = np.random.default_rng(seed)
    return rng.integers(0, bins, size=shape) / (bins - 1) * 2 - 1


# --------------------------------------------------------------------------- Gaussian KL

def test_normal_kl_matches_closed_form_with_unequal_variances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=200), rng.normal(size=200)
    lv1, lv2 = rng.uniform(-6, 3, 200), rng.uniform(-6, 3, 200)
    ours = normal_kl(*(torch.tensor(a) for a in (m1, lv1, m2, lv2))).numpy()
    np.testing.assert_allclose(ours, np_gauss_kl(m1, np.exp(lv1), m2, np.exp(lv2)), rtol=1e-12, atol=1e-13)
    assert normal_kl(*(torch.tensor(a) for a in (m1, lv1, m1, lv1))).abs().max() < 1e-15


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.3, 0.5, -0.2, 1.7), (1.0, 2.0, 0.0, 0.4), (-0.5, 0.05, -0.45, 0.08)])
def test_normal_kl_matches_numerical_integration(m1, s1, m2, s2):
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    ref, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), m1 - 12 * s1, m1 + 12 * s1, limit=200)
    ours = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, 2 * math.log(s1), m2, 2 * math.log(s2))))
    assert float(ours) == pytest.approx(ref, rel=1e-8)


def test_normal_kl_monte_carlo():
    m1, s1, m2, s2 = 0.4, 0.7, -0.3, 1.3
    x = np.random.default_rng(1).normal(m1, s1, 400_000)
    log_ratio = stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)
    ours = float(normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, 2 * math.log(s1), m2, 2 * math.log(s2)))))
    assert abs(log_ratio.mean() - ours) < 4 * log_ratio.std() / math.sqrt(x.size)


# --------------------------------------------------------------------------- discretized decoder

def test_approx_cdf_is_close_to_phi():
    x = np.linspace(-8, 8, 4001)
    err = np.abs(approx_standard_normal_cdf(torch.tensor(x)).numpy() - stats.norm.cdf(x))
    assert err.max() < 2e-4


@pytest.mark.parametrize("mean, scale", [(0.13, 0.05), (-0.7, 0.4), (0.9, 0.003), (0.0, 3.0)])
def test_discretized_log_likelihood_matches_normal_cdf_differences(mean, scale):
    x = np.linspace(-1, 1, 256)
    ref = np_decoder_logp(x, mean, scale)
    ours = discretized_gaussian_log_likelihood(torch.tensor(x), torch.tensor(mean, dtype=torch.float64),
                                               torch.tensor(math.log(scale), dtype=torch.float64)).numpy()
    finite = ref > -600  # where scipy's CDF difference has not underflowed to 0
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(ours))
    # the 256 probabilities of a fixed N(mean, scale²) sum to one
    assert np.exp(ours).sum() == pytest.approx(1.0, abs=1e-12)


def test_discretized_log_likelihood_far_tail_is_finite_and_accurate():
    """Bins 50–300 standard deviations away, on both sides, against scipy's log-survival/log-CDF."""
    h = 1 / 255
    for level, mean, scale in [(191, -0.9, 0.005), (64, 0.9, 0.005), (153, -0.1, 0.001), (120, 0.1, 0.01)]:
        x = level * 2 / 255 - 1
        a, b = (x - h - mean) / scale, (x + h - mean) / scale
        if a > 0:
            la, lb = stats.norm.logsf(a), stats.norm.logsf(b)
            ref = la + np.log1p(-np.exp(lb - la))
        else:
            la, lb = stats.norm.logcdf(a), stats.norm.logcdf(b)
            ref = lb + np.log1p(-np.exp(la - lb))
        ours = float(discretized_gaussian_log_likelihood(torch.tensor(x, dtype=torch.float64),
                                                         torch.tensor(mean, dtype=torch.float64),
                                                         torch.tensor(math.log(scale), dtype=torch.float64)))
        assert ours == pytest.approx(ref, rel=1e-6)


def test_discretized_log_likelihood_float32_has_finite_gradients_in_the_tails():
    """A model far too sure of itself (std e⁻¹² ≈ 6·10⁻⁶): log-probabilities near −10¹⁰ with usable gradients."""
    x = torch.linspace(-1, 1, 256)
    mean = torch.full((256,), 0.3, requires_grad=True)
    log_scale = torch.full((256,), -12.0, requires_grad=True)
    log_p = discretized_gaussian_log_likelihood(x, mean, log_scale)
    log_p.sum().backward()
    assert log_p.dtype == torch.float32 and torch.isfinite(log_p).all()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    ref = np_decoder_logp(np.linspace(-1, 1, 256), 0.3, math.exp(-12.0))
    finite = ref > -600
    np.testing.assert_allclose(log_p.detach().numpy()[finite], ref[finite], rtol=1e-5)
    # d log p / d log σ ≈ z² − 1 for a far-tail bin: positive and huge
    assert log_scale.grad[0] > 1e8


def test_discretized_log_likelihood_tanh_variant_and_other_bin_counts():
    x = np.linspace(-1, 1, 256)
    mean, scale = 0.3, 0.5
    tanh = discretized_gaussian_log_likelihood(torch.tensor(x), torch.tensor(mean), torch.tensor(math.log(scale)),
                                               cdf="tanh").numpy()
    np.testing.assert_allclose(np.exp(tanh), np.exp(np_decoder_logp(x, mean, scale)), atol=4e-4)
    assert np.exp(tanh).sum() == pytest.approx(1.0, abs=1e-9)
    x16 = np.linspace(-1, 1, 16)
    ours = discretized_gaussian_log_likelihood(torch.tensor(x16), torch.tensor(0.1, dtype=torch.float64),
                                               torch.tensor(-1.0, dtype=torch.float64), bins=16).numpy()
    np.testing.assert_allclose(ours, np_decoder_logp(x16, 0.1, math.exp(-1.0), bins=16), rtol=1e-10)


def test_discretized_log_likelihood_rejects_bad_input():
    with pytest.raises(DifflabError, match=r"\[-1, 1\]"):
        discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(DifflabError, match="bins"):
        discretized_gaussian_log_likelihood(torch.tensor([0.0]), torch.tensor(0.0), torch.tensor(0.0), bins=1)
    with pytest.raises(DifflabError, match="cdf"):
        discretized_gaussian_log_likelihood(torch.tensor([0.0]), torch.tensor(0.0), torch.tensor(0.0), cdf="erf")


# --------------------------------------------------------------------------- learned variance

def test_learned_variance_endpoints_and_midpoint(sched):
    betas, _, _, beta_tilde, _, _ = np_tables()
    t = torch.arange(1, T + 1)
    like = torch.ones(T, 3, dtype=torch.float64)
    clipped = beta_tilde.copy()
    clipped[1] = beta_tilde[2]  # β̃_1 = 0 is replaced by β̃_2 (IDDPM code)
    hi = learned_log_variance(sched, t, like).numpy()
    lo = learned_log_variance(sched, t, -like).numpy()
    mid = learned_log_variance(sched, t, 0 * like).numpy()
    np.testing.assert_allclose(hi, np.log(betas[1:])[:, None].repeat(3, 1), rtol=1e-12)
    np.testing.assert_allclose(lo, np.log(clipped[1:])[:, None].repeat(3, 1), rtol=1e-12)
    np.testing.assert_allclose(mid, 0.5 * np.log(betas[1:] * clipped[1:])[:, None].repeat(3, 1), rtol=1e-12)
    assert np.all(hi >= lo)


def test_learned_variance_rejects_bad_timesteps(sched):
    with pytest.raises(DifflabError, match="1..50"):
        learned_log_variance(sched, torch.tensor([0, 1]), torch.zeros(2, 3))
    with pytest.raises(DifflabError, match="integers"):
        learned_log_variance(sched, torch.tensor([1.0, 2.0]), torch.zeros(2, 3))
    with pytest.raises(DifflabError, match="shape"):
        learned_log_variance(sched, torch.tensor([1, 2, 3]), torch.zeros(2, 3))


# --------------------------------------------------------------------------- bound terms

def test_one_term_recomputed_in_numpy(sched):
    _, ab, _, beta_tilde, c0, ct = np_tables()
    rng = np.random.default_rng(3)
    shape = (3, 2, 4, 4)
    x0 = grid_images(shape, 4)
    noise = rng.normal(size=shape)
    t = np.array([17, 2, T])
    tb = t[:, None, None, None]
    x_t = np.sqrt(ab[tb]) * x0 + np.sqrt(1 - ab[tb]) * noise
    mean = rng.normal(size=shape) * 0.3 + x_t * 0.9
    logvar = np.log(beta_tilde[tb]) + rng.uniform(-1, 1, size=shape)
    true_mean = c0[tb] * x0 + ct[tb] * x_t
    ref = np_gauss_kl(true_mean, beta_tilde[tb], mean, np.exp(logvar)).reshape(3, -1).mean(1) / LN2
    ours = vlb_term(sched, *(torch.tensor(a) for a in (x0, x_t)), torch.tensor(t), torch.tensor(mean),
                    torch.tensor(logvar)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_decoder_term_is_discretized_nll_in_bits(sched):
    shape = (2, 3, 4, 4)
    x0 = grid_images(shape, 5)
    rng = np.random.default_rng(6)
    mean = np.clip(x0 + rng.normal(size=shape) * 0.02, -1, 1)
    logvar = np.full(shape, math.log(3e-4))
    ref = -np_decoder_logp(x0, mean, math.exp(0.5 * math.log(3e-4))).reshape(2, -1).mean(1) / LN2
    ours = vlb_term(sched, torch.tensor(x0), torch.tensor(x0), torch.tensor([1, 1]), torch.tensor(mean),
                    torch.tensor(logvar)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_prior_term(sched):
    _, ab, _, _, _, _ = np_tables()
    x0 = grid_images((4, 1, 3, 3), 7)
    ref = np_gauss_kl(np.sqrt(ab[T]) * x0, 1 - ab[T], 0.0, 1.0).reshape(4, -1).mean(1) / LN2
    np.testing.assert_allclose(prior_bpd(sched, torch.tensor(x0)).numpy(), ref, rtol=1e-8, atol=1e-15)


def test_model_mean_from_eps_is_ddpm_eq_11(sched):
    betas, ab, _, _, _, _ = np_tables()
    rng = np.random.default_rng(8)
    x_t, eps = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    t = np.array([1, 9, T])
    tb = t[:, None]
    ref = (x_t - betas[tb] / np.sqrt(1 - ab[tb]) * eps) / np.sqrt(1 - betas[tb])
    ours = model_mean_from_eps(sched, torch.tensor(x_t), torch.tensor(t), torch.tensor(eps)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


class SinglePointOracle:
    """The exact reverse process of data concentrated on one point x*: ε̂ is read off x_t, and the
    variance is β̃_t (v_raw = −1), so p_θ(x_{t−1} | x_t) = q(x_{t−1} | x_t, x*)."""

    def __init__(self, x_star, learned=True):
        self.x_star, self.learned = x_star, learned
        _, ab, _, _, _, _ = np_tables()
        self.ab = torch.tensor(ab)

    def __call__(self, x_t, t):
        a = self.ab[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        eps = (x_t - a.sqrt() * self.x_star) / (1 - a).sqrt()
        return eps, (-torch.ones_like(x_t) if self.learned else None)


@pytest.mark.parametrize("learned", [True, False])
def test_exact_gaussian_case_has_zero_kl_terms(sched, learned):
    _, ab, _, beta_tilde, _, _ = np_tables()
    x_star = torch.tensor(grid_images((1, 2, 3, 3), 9)).expand(4, -1, -1, -1)
    out = full_bound(sched, x_star, SinglePointOracle(x_star, learned), torch.Generator().manual_seed(0))
    assert out["terms_bpd"].shape == (4, T) and out["total_bpd"].shape == (4,)
    assert out["terms_bpd"][:, 1:].abs().max() < 1e-10
    assert out["eps_mse"].max() < 1e-20
    # what is left: the decoder N(x*, β̃_2) on x*'s own bin, and the prior
    decoder = -np_decoder_logp(x_star[0].numpy(), x_star[0].numpy(), math.sqrt(beta_tilde[2])).mean() / LN2
    prior = np_gauss_kl(np.sqrt(ab[T]) * x_star[0].numpy(), 1 - ab[T], 0.0, 1.0).mean() / LN2
    np.testing.assert_allclose(out["decoder_bpd"].numpy(), decoder, rtol=1e-9)
    np.testing.assert_allclose(out["prior_bpd"].numpy(), prior, rtol=1e-9)
    np.testing.assert_allclose(out["total_bpd"].numpy(), decoder + prior, rtol=1e-9)


def test_variance_mismatch_alone_costs_its_gaussian_kl(sched):
    """Exact mean, variance β_t^0.75 β̃_t^0.25 (v_raw = 0.5): L_{t−1} = ½ (r − 1 − log r) nats, r = β̃_t/σ_t²."""
    betas, _, _, beta_tilde, _, _ = np_tables()
    x_star = torch.tensor(grid_images((2, 1, 2, 2), 10))

    def predict(x_t, t):
        return SinglePointOracle(x_star)(x_t, t)[0], torch.full_like(x_t, 0.5)

    out = full_bound(sched, x_star, predict, torch.Generator().manual_seed(0))
    r = beta_tilde[2:] / np.exp(0.75 * np.log(betas[2:]) + 0.25 * np.log(beta_tilde[2:]))
    expected = 0.5 * (r - 1 - np.log(r)) / LN2
    np.testing.assert_allclose(out["terms_bpd"][:, 1:].numpy(), np.tile(expected, (2, 1)), rtol=1e-6, atol=1e-14)
    assert out["terms_bpd"][:, 1].min() > 0.1


class TinyNet(torch.nn.Module):
    """ε and v_raw heads: out_channels = 2C, like a learned-variance U-Net."""

    def __init__(self, channels=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels + 1, 2 * channels, 3, padding=1)

    def forward(self, x, t):
        tt = (t.to(x.dtype) / T).reshape(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
        return torch.tanh(self.conv(torch.cat([x, tt], 1)))


def test_full_bound_terms_sum_to_total_and_reproduce(sched):
    torch.manual_seed(0)
    net = TinyNet().double()
    x0 = torch.tensor(grid_images((3, 2, 4, 4), 11))
    predict = model_predictor(net, sched)
    out = full_bound(sched, x0, predict, torch.Generator().manual_seed(5))
    assert set(out) == {"total_bpd", "prior_bpd", "terms_bpd", "decoder_bpd", "eps_mse"}
    torch.testing.assert_close(out["total_bpd"], out["prior_bpd"] + out["terms_bpd"].sum(1), rtol=1e-14, atol=0)
    assert torch.equal(out["decoder_bpd"], out["terms_bpd"][:, 0])
    assert out["terms_bpd"][:, 1:].min() >= 0 and torch.isfinite(out["total_bpd"]).all()
    again = full_bound(sched, x0, predict, torch.Generator().manual_seed(5))
    assert torch.equal(again["total_bpd"], out["total_bpd"])


def test_full_bound_column_is_the_term_at_that_timestep(sched):
    """Column t − 1 is L_{t−1}: rebuild the draw order (T..1, one noise draw each) for t = 7."""
    torch.manual_seed(1)
    net = TinyNet().double()
    x0 = torch.tensor(grid_images((2, 2, 4, 4), 12))
    out = full_bound(sched, x0, model_predictor(net, sched), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    for _ in range(T, 7, -1):
        torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    noise = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    betas, ab, _, beta_tilde, c0, ct = np_tables()
    x_t = math.sqrt(ab[7]) * x0 + math.sqrt(1 - ab[7]) * noise
    with torch.no_grad():
        raw = net(x_t, torch.full((2,), 7.0, dtype=torch.float64))
    eps, v = raw[:, :2].numpy(), raw[:, 2:].numpy()
    x0_hat = (x_t.numpy() - math.sqrt(1 - ab[7]) * eps) / math.sqrt(ab[7])
    mean = c0[7] * x0_hat + ct[7] * x_t.numpy()
    frac = (v + 1) / 2
    var = np.exp(frac * np.log(betas[7]) + (1 - frac) * np.log(beta_tilde[7]))
    true_mean = c0[7] * x0.numpy() + ct[7] * x_t.numpy()
    ref = np_gauss_kl(true_mean, beta_tilde[7], mean, var).reshape(2, -1).mean(1) / LN2
    np.testing.assert_allclose(out["terms_bpd"][:, 6].numpy(), ref, rtol=1e-9)


# --------------------------------------------------------------------------- hybrid objective

def test_l_vlb_trains_only_the_variance(sched):
    rng = np.random.default_rng(13)
    x0 = torch.tensor(grid_images((4, 2, 3, 3), 14))
    noise = torch.tensor(rng.normal(size=x0.shape))
    t = torch.tensor([1, 5, 20, T])
    ab = torch.tensor(np_tables()[1])[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    output = torch.tensor(rng.normal(size=(4, 4, 3, 3)) * 0.5, requires_grad=True)
    vlb = l_vlb(sched, x0, x_t, t, output)
    vlb.sum().backward()
    assert output.grad[:, :2].abs().max() == 0 and output.grad[:, 2:].abs().min() > 0
    # the value is T times the term with the full (undetached) output
    eps, v_raw = output.detach()[:, :2], output.detach()[:, 2:]
    term = vlb_term(sched, x0, x_t, t, model_mean_from_eps(sched, x_t, t, eps), learned_log_variance(sched, t, v_raw))
    torch.testing.assert_close(vlb.detach(), T * term, rtol=1e-14, atol=0)

    output.grad = None
    hybrid = l_hybrid(sched, x0, x_t, t, noise, output)
    hybrid.sum().backward()
    mse = (eps - noise).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(hybrid.detach(), mse + 0.001 * T * term, rtol=1e-14, atol=0)
    expected_eps_grad = 2 * (eps - noise) / eps[0].numel()  # d/dε̂ of the mean squared error only
    torch.testing.assert_close(output.grad[:, :2], expected_eps_grad, rtol=1e-12, atol=1e-15)


def test_hybrid_losses_with_a_two_c_channel_model(sched):
    torch.manual_seed(2)
    net = TinyNet()
    x0 = torch.tensor(grid_images((4, 2, 4, 4), 15), dtype=torch.float32)
    sampler = LossSecondMomentSampler(T)
    t, w = sampler.sample(4, torch.Generator().manual_seed(0))
    out = hybrid_losses(ModelDenoiser(net, sched, learned_variance=True), x0, t, generator=torch.Generator().manual_seed(1))
    assert set(out) == {"loss", "mse", "vlb"} and all(v.shape == (4,) for v in out.values())
    torch.testing.assert_close(out["loss"], out["mse"] + 0.001 * out["vlb"])
    (out["loss"] * w).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    sampler.update(t, out["loss"])
    with pytest.raises(DifflabError, match="2 x 2 = 4 channels"):
        split_output(torch.zeros(4, 3, 4, 4), 2)


def test_bound_rejects_continuous_schedules():
    with pytest.raises(DifflabError, match="discrete"):
        prior_bpd(schedules.get("vp"), torch.zeros(2, 3))


# --------------------------------------------------------------------------- timestep samplers

def test_uniform_sampler():
    s = UniformSampler(T)
    t, w = s.sample(20_000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and t.min() == 1 and t.max() == T
    assert torch.all(w == 1) and w.dtype == torch.float32
    assert s.state_dict() == {}


def fill(sampler, losses_by_t, rounds, rng, record=None):
    """Feed ``rounds`` noisy losses per t in shuffled batches; return our own record of the last 10 per t."""
    record = record if record is not None else {t: deque(maxlen=10) for t in range(1, T + 1)}
    for _ in range(rounds):
        ts = rng.permutation(np.arange(1, T + 1))
        values = losses_by_t[ts - 1] * rng.uniform(0.5, 1.5, size=T)
        for a in np.array_split(np.arange(T), 7):
            sampler.update(torch.tensor(ts[a]), torch.tensor(values[a]))
        for tt, v in zip(ts, values):
            record[int(tt)].append(float(v))
    return record


def test_second_moment_sampler_is_uniform_until_every_history_is_full():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.1, 3.0, T)
    s = LossSecondMomentSampler(T)
    record = fill(s, losses, 9, rng)
    assert not s.warmed_up() and torch.equal(s.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))
    record = fill(s, losses, 5, rng, record)  # 14 rounds in all: each history holds the last 10
    assert s.warmed_up()
    root = np.array([math.sqrt(np.mean(np.square(record[t]))) for t in range(1, T + 1)])
    expected = (1 - 1e-3) * root / root.sum() + 1e-3 / T
    np.testing.assert_allclose(s.probabilities().numpy(), expected, rtol=1e-12)
    assert s.probabilities().sum().item() == pytest.approx(1.0, abs=1e-14)


def warmed_sampler(losses, seed=0):
    s = LossSecondMomentSampler(T)
    fill(s, losses, 10, np.random.default_rng(seed))
    return s


def test_importance_weights_are_unbiased():
    rng = np.random.default_rng(1)
    losses = rng.uniform(0.0, 1.0, T) ** 3 * 10  # a skewed loss profile
    s = warmed_sampler(losses)
    p = s.probabilities().numpy()
    assert p.max() / p.min() > 10  # the distribution is far from uniform
    w_all = s.weights(torch.arange(1, T + 1)).numpy()
    np.testing.assert_allclose(w_all, 1 / (T * p), rtol=1e-14)
    assert float(np.sum(p * w_all * losses)) == pytest.approx(losses.mean(), rel=1e-13)
    # Monte Carlo over sampled t, and the sampled t follow p
    t, w = s.sample(200_000, torch.Generator().manual_seed(2), dtype=torch.float64)
    est = w.numpy() * losses[t.numpy() - 1]
    assert abs(est.mean() - losses.mean()) < 4 * est.std() / math.sqrt(est.size)
    freq = np.bincount(t.numpy(), minlength=T + 1)[1:] / t.numel()
    assert np.abs(freq - p).max() < 4 * math.sqrt(p.max() / t.numel())
    np.testing.assert_allclose(w.numpy(), 1 / (T * p[t.numpy() - 1]), rtol=1e-14)


def test_state_round_trip_reproduces_draws_bit_for_bit():
    rng = np.random.default_rng(3)
    losses = rng.uniform(0.1, 2.0, T)
    a = warmed_sampler(losses)
    g = torch.Generator().manual_seed(4)
    state, g_state = a.state_dict(), g.get_state()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    first = a.sample(64, g)
    a.update(first[0], torch.tensor(losses[first[0].numpy() - 1]))
    second = a.sample(64, g)

    b = LossSecondMomentSampler(T)
    b.load_state_dict({k: v.clone() for k, v in state.items()})
    g2 = torch.Generator().set_state(g_state)
    b_first = b.sample(64, g2)
    b.update(b_first[0], torch.tensor(losses[b_first[0].numpy() - 1]))
    b_second = b.sample(64, g2)
    for x, y in zip(first + second, b_first + b_second):
        assert torch.equal(x, y)
    assert torch.equal(a.loss_history, b.loss_history)


def test_sampler_errors():
    s = LossSecondMomentSampler(T)
    with pytest.raises(DifflabError, match="1..50"):
        s.update(torch.tensor([0]), torch.tensor([1.0]))
    with pytest.raises(DifflabError, match="non-finite"):
        s.update(torch.tensor([3]), torch.tensor([float("nan")]))
    with pytest.raises(DifflabError, match="one loss per timestep"):
        s.update(torch.tensor([3, 4]), torch.tensor([1.0]))
    with pytest.raises(DifflabError, match="expected"):
        s.load_state_dict({"loss_history": torch.zeros(T, 5), "loss_counts": torch.zeros(T, dtype=torch.long)})
    with pytest.raises(DifflabError, match="unknown timestep sampler"):
        get_sampler("importance", T)
    assert isinstance(get_sampler("loss-second-moment", T, history=3), LossSecondMomentSampler)
