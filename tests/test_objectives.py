"""L_simple against closed-form expectations: with a network that outputs zero, the loss is the
mean square of the target, whose expectation over t ~ U{1..T} is known for ε, x_0 and v."""

import math

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


# --- loss weightings (min-SNR-γ and its soft version) -----------------------------------------------------------

GAMMA = 5.0


def _snr(sched, t):
    """SNR(t) = ᾱ_t/(1 − ᾱ_t) from the schedule's table, in float64 (Kingma et al. 2021, Eq. 2)."""
    ab = sched.alpha_bar.double()[t]
    return ab / (1 - ab)


@pytest.mark.parametrize("weighting", ["min-snr", "soft-min-snr"])
def test_min_snr_weights_are_the_papers_formulas_per_parameterization(sched, weighting):
    """Hang et al. 2023: min(SNR, γ)/SNR for ε, min(SNR, γ) for x_0, min(SNR, γ)/(SNR + 1) for v (the v form is the
    one diffusers once got wrong, #5654); the soft version SNR γ/(SNR + γ) in x_0-space, divided alike."""
    from difflab.denoiser import preconditioning
    from difflab.objectives import loss_weight

    t = torch.tensor([1, 10, 100, 300, 500, 800, 1000])
    snr = _snr(sched, t)
    w_x0 = snr.clamp(max=GAMMA) if weighting == "min-snr" else snr * GAMMA / (snr + GAMMA)
    like = torch.zeros(len(t), 3)
    expected = {"x0": w_x0, "eps": w_x0 / snr, "v": w_x0 / (snr + 1), "score": w_x0 / snr}
    for param, want in expected.items():
        got = loss_weight(preconditioning(sched, param), t, like, weighting, GAMMA)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=0, msg=param)
    if weighting == "min-snr":  # below γ the ε-space weight is exactly 1: L_simple there
        low = snr < GAMMA
        got = loss_weight(preconditioning(sched, "eps"), t, like, weighting, GAMMA)[low]
        assert torch.allclose(got, torch.ones(int(low.sum()), dtype=torch.float64))


SIGMA_DATA = 0.5


def _closed_form_x0_weight(name: str, weighting: str, t: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """Each weighting of the x_0 error written out by hand for the schedule ``name``: min-SNR and its soft form (Hang
    et al. 2023; Crowson et al. 2024), EDM's (σ² + σ_d²)/(σ σ_d)² with σ² = 1/SNR (Karras et al. 2022, Eq. 8), and
    the likelihood weight −dSNR/dt (Kingma et al. 2021, Eq. 17), differentiated by hand per schedule."""
    if weighting == "min-snr":
        return snr.clamp(max=GAMMA)
    if weighting == "soft-min-snr":
        return snr * GAMMA / (snr + GAMMA)
    if weighting == "edm":
        return (1 / snr + SIGMA_DATA**2) / (SIGMA_DATA**2 / snr)
    if name == "flow":  # SNR = (1 − t)²/t²
        return 2 * (1 - t) / t**3
    if name == "vp":  # SNR = α²/(1 − α²), (α²)' = −β(t) α², β(t) = 0.1 + 19.9 t
        a2 = torch.exp(-0.5 * t**2 * 19.9 - 0.1 * t)
        return (0.1 + 19.9 * t) * a2 / (1 - a2) ** 2
    assert name == "ve"  # SNR = 1/σ², σ = σ_min (σ_max/σ_min)^t
    sigma = 0.002 * (80 / 0.002) ** t
    return 2 * math.log(80 / 0.002) / sigma**2


@pytest.mark.parametrize("name", ["vp", "ve", "flow"])
@pytest.mark.parametrize("weighting", ["min-snr", "soft-min-snr", "edm", "likelihood"])
def test_weighted_losses_agree_across_parameterizations(name, weighting):
    """One prediction x̂_0 at one x_t, written as each parameterization's output (ε̂, x̂_0, v̂, EDM's F̂, the flow
    velocity û — each by hand from its paper): the output's squared error times :func:`loss_weight` is the same
    number for all, the closed-form x_0-space weight times ‖x̂_0 − x_0‖²."""
    from difflab import process
    from difflab.denoiser import preconditioning
    from difflab.objectives import loss_weight

    params = {"ve": {"sigma_min": 0.002, "sigma_max": 80.0}}.get(name, {})
    sched = schedules.get(name, **params)
    g = torch.Generator().manual_seed(0)
    n = 64
    t = 0.01 + 0.98 * torch.rand(n, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 4, generator=g, dtype=torch.float64)
    a, s = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    x_t = a * x0 + s * eps
    x0_hat = x0 + 0.3 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    eps_hat = (x_t - a * x0_hat) / s
    outputs = {"x0": (x0_hat, x0), "eps": (eps_hat, eps)}
    if name == "vp":  # v = α ε − σ x_0 (Salimans & Ho 2022) needs α² + σ² = 1
        outputs["v"] = (a * eps_hat - s * x0_hat, a * eps - s * x0)
    if name == "flow":  # u = ε − x_0 on the straight path (Lipman et al. 2023, Eq. 23)
        outputs["velocity"] = (eps_hat - x0_hat, eps - x0)
    sig = s / a  # EDM: D = c_skip x̃ + c_out F with x̃ = x_t/α (Karras et al. 2022, Table 1)
    c_skip = SIGMA_DATA**2 / (sig**2 + SIGMA_DATA**2)
    c_out = sig * SIGMA_DATA / (sig**2 + SIGMA_DATA**2).sqrt()
    outputs["edm"] = ((x0_hat - c_skip * x_t / a) / c_out, (x0 - c_skip * x_t / a) / c_out)
    snr = (a**2 / s**2).flatten()
    reference = _closed_form_x0_weight(name, weighting, t, snr) * (x0_hat - x0).pow(2).sum(1)
    for param, (out, target) in outputs.items():
        pre = preconditioning(sched, param, sigma_data=SIGMA_DATA)
        weighted = loss_weight(pre, t, x0, weighting, GAMMA, SIGMA_DATA) * (out - target).pow(2).sum(1)
        rtol = 1e-4 if weighting == "likelihood" else 1e-6  # λ' by a central difference
        torch.testing.assert_close(weighted, reference, rtol=rtol, atol=1e-10, msg=param)


def test_edm_weighting_is_the_edm_parameterizations_own_loss():
    """EDM's network regresses (x_0 − c_skip x̃)/c_out, so its unweighted loss is already λ(σ) times the x_0 error:
    the edm weighting there is exactly 1."""
    from difflab.denoiser import preconditioning
    from difflab.objectives import loss_weight

    sched = schedules.get("ve", sigma_min=0.002, sigma_max=80.0)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    w = loss_weight(preconditioning(sched, "edm", sigma_data=SIGMA_DATA), t, torch.zeros(50, 2), "edm", GAMMA, SIGMA_DATA)
    torch.testing.assert_close(w, torch.ones(50, dtype=torch.float64))


def test_discrete_likelihood_weight_is_the_bounds_snr_difference(sched):
    """On a discrete schedule the likelihood weight at t is −dSNR/dt; the discrete bound's x_0 weight is
    SNR(t − 1) − SNR(t) (Kingma et al. 2021, Eq. 13). The two agree to first order where SNR is smooth."""
    from difflab.objectives import x0_weight

    t = torch.arange(100, 1000, 50)
    w = x0_weight(sched, t, torch.zeros(len(t), 1), "likelihood").flatten()
    discrete = (_snr(sched, t - 1) + _snr(sched, t)) / 2 - (_snr(sched, t) + _snr(sched, t + 1)) / 2
    torch.testing.assert_close(w, discrete, rtol=1e-2, atol=0)


def test_a_weighted_run_trains_and_bad_weightings_are_refused(tiny_toy_config, tmp_path):
    import yaml

    from difflab.config import resolve
    from difflab.errors import DifflabError
    from difflab.training.diffusion import train

    cfg = yaml.safe_load(tiny_toy_config.read_text())
    cfg["diffusion"] = {**cfg["diffusion"], "weighting": "min-snr"}
    run = train(resolve(cfg), tmp_path / "run", steps=10, progress=False, log=lambda *_: None)
    losses = [float(r.split(",")[1]) for r in (run / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 1 and 0 < losses[0] < 1  # the weight is at most 1 in ε-space: below L_simple's ~1
    for bad, match in [({"weighting": "max-snr"}, "diffusion.weighting must be one of none, min-snr, soft-min-snr, edm, likelihood"),
                       ({"weighting": "min-snr", "min_snr_gamma": 0}, "diffusion.min_snr_gamma must be a positive"),
                       ({"weighting": "min-snr", "loss": "hybrid", "learned_variance": True}, "has its own weighting")]:
        with pytest.raises(DifflabError, match=match):
            resolve({**cfg, "diffusion": {**cfg["diffusion"], **bad}})
