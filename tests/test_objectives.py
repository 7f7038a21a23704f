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
    from difflab.objectives import snr_weight

    t = torch.tensor([1, 10, 100, 300, 500, 800, 1000])
    snr = _snr(sched, t)
    w_x0 = snr.clamp(max=GAMMA) if weighting == "min-snr" else snr * GAMMA / (snr + GAMMA)
    like = torch.zeros(len(t), 3)
    expected = {"x0": w_x0, "eps": w_x0 / snr, "v": w_x0 / (snr + 1), "score": w_x0 / snr}
    for param, want in expected.items():
        got = snr_weight(sched, param, t, like, weighting, GAMMA)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=0, msg=param)
    if weighting == "min-snr":  # below γ the ε-space weight is exactly 1: L_simple there
        low = snr < GAMMA
        assert torch.allclose(snr_weight(sched, "eps", t, like, weighting, GAMMA)[low], torch.ones(int(low.sum()), dtype=torch.float64))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "vp"])
@pytest.mark.parametrize("weighting", ["min-snr", "soft-min-snr"])
def test_weighted_losses_agree_across_parameterizations(schedule, weighting):
    """One prediction x̂_0 at one x_t, written as ε̂, x̂_0 or v̂: each parameterization's squared error times its
    weight is the same number, the x_0-space weight times ‖x̂_0 − x_0‖²."""
    from difflab import process
    from difflab.objectives import snr_weight

    sched = schedules.get(schedule, T=1000)
    g = torch.Generator().manual_seed(0)
    n = 64
    t = torch.randint(1, 1001, (n,), generator=g) if sched.discrete else \
        0.001 + 0.998 * torch.rand(n, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x_t = process.q_sample(sched, x0, t, eps)
    x0_hat = x0 + 0.3 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    eps_hat = process.x0_to_eps(sched, x_t, t, x0_hat)
    outputs = {"x0": (x0_hat, x0), "eps": (eps_hat, eps),
               "v": (process.v_target(sched, x0_hat, t, eps_hat), process.v_target(sched, x0, t, eps))}
    a, s = process.alpha(sched, t, x0), process.sigma(sched, t, x0)
    snr = (a**2 / s**2).flatten()
    w_x0 = snr.clamp(max=GAMMA) if weighting == "min-snr" else snr * GAMMA / (snr + GAMMA)
    reference = w_x0 * (x0_hat - x0).pow(2).sum(1)
    for param, (out, target) in outputs.items():
        weighted = snr_weight(sched, param, t, x0, weighting, GAMMA) * (out - target).pow(2).sum(1)
        torch.testing.assert_close(weighted, reference, rtol=1e-7, atol=1e-10, msg=param)


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
    for bad, match in [({"weighting": "max-snr"}, "diffusion.weighting must be one of none, min-snr, soft-min-snr"),
                       ({"weighting": "min-snr", "min_snr_gamma": 0}, "diffusion.min_snr_gamma must be a positive"),
                       ({"weighting": "min-snr", "loss": "hybrid", "learned_variance": True}, "has its own weighting")]:
        with pytest.raises(DifflabError, match=match):
            resolve({**cfg, "diffusion": {**cfg["diffusion"], **bad}})
