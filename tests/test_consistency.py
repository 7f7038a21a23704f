"""Consistency models against exact answers: the parameterization's boundary condition and the paper's scalings; iCT's
curriculum, level proposal and metric against their formulas (scipy for the log-normal); multistep consistency
sampling with the exact consistency function of Gaussian data draws that Gaussian at every step count; a student
distilled from the exact Gaussian teacher matches the closed-form ODE map and is consistent along a trajectory; the
presets train on a toy and on digits; the refusals."""

import math

import pytest
import torch
from scipy import stats

from difflab import consistency as cm
from difflab import schedules
from difflab.config import resolve
from difflab.data import Dataset
from difflab.data.normalization import Normalization
from difflab.denoiser import ConsistencyPreconditioning, ModelDenoiser, Prediction
from difflab.errors import DifflabError
from difflab.samplers import discretize, sample
from difflab.toy import GaussianMixture
from difflab.training.consistency_distill import ConsistencyDistillTrainable, consistency_distill, student_config
from difflab.training.loop import LoopOptions, fit

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"progress": False, "log": lambda *a: None}
MEAN, STD = torch.tensor([1.0, -0.5]), 0.5


@pytest.fixture
def ve():
    return schedules.get("ve", sigma_min=0.002, sigma_max=80.0)


def test_the_boundary_condition_and_the_papers_scalings(ve):
    """c_skip = σ_d²/((σ − σ_min)² + σ_d²), c_out = σ_d (σ − σ_min)/√(σ² + σ_d²) (Song et al. 2023, Appendix C),
    recomputed in float64 from σ; at t_min the model returns its input whatever the network says."""
    pre = ConsistencyPreconditioning(ve, sigma_data=0.5)
    s_min = 0.002 * 40000 ** 1e-5  # σ(t_min) of σ_min (σ_max/σ_min)^t at t_min = 1e-5
    assert pre.sigma_min == pytest.approx(s_min, rel=1e-12)
    t = torch.tensor([1e-5, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    like = torch.zeros(5, 3)
    _, sigma, c_skip, c_out, c_in, _ = pre.scalings(t, like)
    sig = 0.002 * 40000 ** t
    torch.testing.assert_close(sigma.flatten(), sig)
    torch.testing.assert_close(c_skip.flatten(), 0.25 / ((sig - s_min) ** 2 + 0.25))
    torch.testing.assert_close(c_out.flatten(), 0.5 * (sig - s_min) / (sig**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in.flatten(), 1 / (sig**2 + 0.25).sqrt())
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    den = ModelDenoiser(lambda x, time: net(x) + time[:, None], ve, "consistency")
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(den(x, torch.full((8,), ve.t_min, dtype=torch.float64)).x0, x)
    with pytest.raises(DifflabError, match="learned_variance"):
        from difflab.denoiser import preconditioning
        preconditioning(ve, "consistency", learned_variance=True)


@pytest.mark.parametrize("k,n", [(0, 11), (49_999, 11), (50_000, 21), (100_000, 41), (349_999, 641),
                                 (350_000, 1281), (399_999, 1281)])
def test_the_curriculum_doubles_in_equal_stages(k, n):
    """iCT Eq. 8 at its CIFAR-10 setting, K = 400,000, s0 = 10, s1 = 1280: K' = ⌊400,000/8⌋ = 50,000."""
    assert cm.discretization_steps(k, 400_000) == n


def test_level_probabilities_are_the_lognormal_mass_between_levels():
    sig = cm.karras_levels(41, 0.002, 80.0)
    p = cm.level_probabilities(sig)
    dist = stats.norm(loc=-1.1, scale=2.0)
    mass = dist.cdf(sig[1:].log().numpy()) - dist.cdf(sig[:-1].log().numpy())
    torch.testing.assert_close(p, torch.tensor(mass / mass.sum()))
    assert p.sum() == pytest.approx(1.0)


def test_karras_levels_are_evenly_spaced_in_the_rho_th_root():
    sig = cm.karras_levels(18, 0.002, 80.0, rho=7.0)
    root = sig ** (1 / 7)
    assert float(sig[0]) == pytest.approx(0.002) and float(sig[-1]) == pytest.approx(80.0)
    torch.testing.assert_close(root[1:] - root[:-1], torch.full((17,), float(root[1] - root[0]), dtype=torch.float64))


def test_level_times_land_on_the_levels_and_are_the_karras_discretization(ve):
    ts = cm.level_times(ve, 18)
    sigma = ve.sigma(ts) / ve.alpha(ts)
    want = cm.karras_levels(18, float(ve.sigma(torch.tensor(ve.t_min))), 80.0)
    torch.testing.assert_close(sigma.double(), want, rtol=1e-9, atol=0)
    assert torch.equal(discretize(ve, 18, "karras"), ts.flip(0))
    cosine = schedules.get("cosine", 1000)  # noisier than σ̃ = 80 at T: T stays the top level
    top = cm.level_times(cosine, 10)
    assert float(top[-1]) == 1000.0 and float(top[0]) == 1.0
    assert float(cosine.sigma(top[-2]) / cosine.alpha(top[-2])) < 80.0


def test_pseudo_huber_is_its_formula_and_its_two_limits():
    a = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    b = a + torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * torch.logspace(-6, 1, 6)[:, None, None, None]
    c = 0.00054 * math.sqrt(48)
    sq = (a - b).double().pow(2).flatten(1).sum(1)
    torch.testing.assert_close(cm.pseudo_huber(a, b).double(), (sq + c * c).sqrt() - c, rtol=1e-5, atol=1e-9)
    d = cm.pseudo_huber(a, b).double()
    assert float(d[0]) == pytest.approx(float(sq[0]) / (2 * c), rel=1e-3)  # quadratic for tiny differences
    assert float(d[-1]) == pytest.approx(float(sq[-1].sqrt()) - c, rel=1e-3)  # linear for large ones


def exact_consistency(schedule, mean, std):
    """The consistency function of N(mean, std² I) data: (x̃ − μ)/√(s² + σ̃²) is constant along a probability-flow
    trajectory, so f(x̃, σ̃) = μ + (x̃ − μ) √(s² + σ̃_min²)/√(s² + σ̃²)."""
    t_min = torch.tensor(float(schedule.t_min), dtype=torch.float64)
    s_min = float(schedule.sigma(t_min) / schedule.alpha(t_min))

    def f(x, t):
        t = torch.as_tensor(t, dtype=torch.float64).expand(x.shape[0]) if torch.as_tensor(t).ndim == 0 else t
        a = schedule.alpha(t.double()).reshape(-1, 1)
        s = (schedule.sigma(t.double()) / schedule.alpha(t.double())).reshape(-1, 1)
        x0 = mean + (x.double() / a - mean) * math.sqrt(std**2 + s_min**2) / (std**2 + s**2).sqrt()
        return x0
    return f, s_min


class ExactConsistency:
    def __init__(self, schedule, mean, std):
        self.schedule = schedule
        self.f, _ = exact_consistency(schedule, mean, std)

    def __call__(self, x, t):
        x0 = self.f(x, t)
        return Prediction(eps=torch.zeros_like(x0), x0=x0)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_multistep_sampling_with_the_exact_consistency_function_draws_the_data(ve, steps):
    """Renoising x̂_0 ~ N(μ, s² + σ_min²) by √(σ_s² − σ_min²) gives the exact marginal at σ_s, so every step count
    draws N(μ, s² + σ_min²) up to the prior's mismatch at σ_max = 80 (|μ|/80): mean and std of 40,000 draws within
    4 standard errors."""
    mean, std = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5
    den = ExactConsistency(ve, mean, std)
    x = sample(den, (40_000, 2), sampler="consistency", steps=steps, generator=torch.Generator().manual_seed(steps))
    se = std / math.sqrt(40_000)
    assert (x.mean(0) - mean).abs().max() < 4 * se + 1.2 / 80
    assert (x.std(0) - math.sqrt(std**2 + 0.002**2)).abs().max() < 4 * se / math.sqrt(2) + 1e-3


def test_the_sampler_visits_one_step_more_without_t_min(ve):
    """Two consistency steps visit t_max and the middle of the log-SNR range (the 3-step logsnr grid without t_min),
    not t_min, where f(x, t_min) = x would waste the second evaluation."""
    seen = []
    sample(ExactConsistency(ve, torch.zeros(2, dtype=torch.float64), 1.0), (4, 2), sampler="consistency", steps=2,
           generator=torch.Generator().manual_seed(0), callback=lambda i, t, x, p: seen.append(t))
    assert seen == [float(t) for t in discretize(ve, 3, "logsnr")[:-1]]


def test_the_sampler_refuses_a_diffusion_model(ve):
    """A diffusion model's x̂_0 is a posterior mean, not the end of a trajectory: renoising it step after step would
    draw blurred samples without a word, so the consistency sampler refuses it (an oracle without a parameterization
    is taken at its word, as above)."""
    den = ModelDenoiser(lambda x, t: torch.zeros_like(x), ve, "eps")
    with pytest.raises(DifflabError, match="only a consistency model predicts; this model predicts 'eps'"):
        sample(den, (4, 2), sampler="consistency", steps=2)
    class Wrapped:  # a wrapper (as guidance wraps a model) hides nothing
        def __init__(self, inner):
            self.inner, self.schedule = inner, inner.schedule

        def __call__(self, x, t):
            return self.inner(x, t)

    with pytest.raises(DifflabError, match="only a consistency model"):
        sample(Wrapped(den), (4, 2), sampler="consistency", steps=2)
    assert sample(Wrapped(ModelDenoiser(lambda x, t: torch.zeros_like(x), ve, "consistency")), (4, 2),
                  sampler="consistency", steps=2).shape == (4, 2)


def gaussian_data(n=20_000):
    return (MEAN + STD * torch.randn(n, 2, generator=torch.Generator().manual_seed(0))).float()


class GaussianStudent(ConsistencyDistillTrainable):
    def dataset(self):
        return Dataset("gaussian", "toy", gaussian_data(), None)


def test_a_student_distilled_from_the_exact_teacher_matches_the_ode_map_and_is_consistent(tmp_path, ve):
    """The teacher is the exact Gaussian denoiser on EDM's VE schedule (in the run's standardised coordinates); an MLP
    consistency student learns from its Heun steps on 40 levels for 1,500 steps. Its one-step map from x_T lies within
    0.06 RMS of the closed-form probability-flow map (model units; the data's std is 1; measured 0.046), nearer than
    the 18-step Heun sampler run on the exact teacher itself (35 evaluations: 0.063); and its outputs at two points of
    one exact trajectory (σ̃ = 2 and 0.5) agree with each other and with the exact end within 0.05.

    What bounds it: the teacher's discretized map has its own error, second order in the levels (0.063 RMS for 18
    Heun levels, 0.011 for 40, 0.0027 for 80, measured), and the student's errors add up along the grid, growing
    with σ (iCT's weighting λ = 1/Δσ is needed: with λ = 1 the one-step error is 0.66 after 800 steps, 0.10 with it)."""
    cfg = resolve({"preset": "8gaussians-edm",
                   "train": {"steps": 1500, "batch_size": 256, "lr": 2e-3, "warmup": 50, "save_every": 1500,
                             "log_every": 500, "sample_every": 0, "ema_decay": 0.99}})
    cfg = student_config(cfg, None, 40, {})
    norm = Normalization.fit("toy", gaussian_data())
    mean = (MEAN.double() - torch.tensor(norm.shift)) / norm.scale
    std = STD / norm.scale
    oracle = GaussianMixture(mean[None], std).denoiser(ve)
    fit(GaussianStudent(cfg, teacher=oracle), tmp_path / "s", LoopOptions.from_section(cfg["train"]), 0, **QUIET)
    from difflab.run import load

    run = load(tmp_path / "s")
    f_exact, _ = exact_consistency(ve, mean, std)
    x_T = 80.0 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    rms = lambda a, b: float((a.double() - b.double()).pow(2).sum(1).mean().sqrt())  # noqa: E731
    one_step = sample(run.denoiser, x_T.shape, sampler="consistency", steps=1, x_T=x_T)
    exact = f_exact(x_T, torch.tensor(1.0))
    heun18 = sample(oracle, x_T.shape, sampler="heun", steps=18, x_T=x_T.double(), discretization="karras")
    assert rms(one_step, exact) < min(0.06, rms(heun18, exact)), (rms(one_step, exact), rms(heun18, exact))
    # two points of one exact trajectory: x at σ̃ = 2 carried down to σ̃ = 0.5 by the closed-form flow
    x0 = mean + std * torch.randn(2000, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    t_hi, t_lo = (float(ve.t_from_lambda(torch.tensor(-2 * math.log(s), dtype=torch.float64))) for s in (2.0, 0.5))
    x_hi = x0 + 2.0 * z
    x_lo = mean + (x_hi - mean) * math.sqrt(std**2 + 0.25) / math.sqrt(std**2 + 4.0)
    with torch.no_grad():
        f_hi = run.denoiser(x_hi.float(), t_hi).x0
        f_lo = run.denoiser(x_lo.float(), t_lo).x0
    errors = rms(f_hi, f_lo), rms(f_hi, f_exact(x_hi, torch.tensor(t_hi))), rms(f_lo, f_exact(x_lo, torch.tensor(t_lo)))
    assert max(errors) < 0.05, errors


def test_the_ct_preset_trains_on_a_toy_and_finds_the_modes(train_toy, fraction_near_modes):
    import difflab

    run = difflab.load(train_toy("8gaussians-ct", 1000))  # measured 0.60 and 0.83 within 0.5 of a centre
    assert run.config["sample"] == {**run.config["sample"], "sampler": "consistency", "steps": 2}
    for steps, least in ((1, 0.5), (2, 0.75)):
        near = fraction_near_modes(run, "consistency", steps)
        assert near > least, (steps, near)


def test_digits_ct_trains_and_samples_images(tmp_path):
    import difflab
    from difflab.training.diffusion import train

    cfg = resolve({"preset": "digits-ct", "data": {"num": 256},
                   "model": {"base_channels": 8, "groups": 8},
                   "train": {"steps": 6, "batch_size": 16, "save_every": 6, "log_every": 3, "sample_every": 0}})
    run = difflab.load(train(cfg, tmp_path / "d", progress=False, log=lambda *_: None))
    x = run.sample(4, steps=1, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()
    # the editing commands take the consistency sampler by default (Song et al. 2023, Algorithm 4) ...
    import numpy as np

    from difflab.cli.main import main
    from difflab.tasks.sdedit import sdedit

    guide = tmp_path / "guide.npz"
    np.savez(guide, samples=x.clamp(0, 1).numpy())
    assert main(["edit", str(run.path), "--image", str(guide), "--strength", "0.5", "--out", str(tmp_path / "e.npz")]) == 0
    direct = sdedit(run.denoiser, run.normalization.to_model(x.clamp(0, 1)), 0.5, sampler="consistency", steps=50,
                    generator=torch.Generator().manual_seed(0))
    edited = torch.from_numpy(np.load(tmp_path / "e.npz")["samples"])
    assert torch.allclose(edited, run.normalization.to_data(direct).clamp(0, 1), atol=1e-6)
    # ... and DDIM inversion, which a consistency model cannot run, is refused in one sentence
    assert main(["interpolate", str(run.path), "--image", str(guide), "--image2", str(guide), "--out",
                 str(tmp_path / "i.png")]) == 2
    assert not (tmp_path / "i.png").exists()


def test_the_cli_distils_a_teacher_and_refuses_what_it_cannot(train_toy, tmp_path, capsys):
    from difflab.cli.main import main

    teacher = train_toy("8gaussians-edm", 30)
    out = tmp_path / "cd"
    assert main(["distill", str(teacher), "--method", "consistency", "--out", str(out), "--steps", "8",
                 "--no-progress"]) == 0
    assert "sample it with: difflab sample" in capsys.readouterr().out
    cfg = __import__("json").loads((out / "config.json").read_text())
    assert cfg["distill"]["method"] == "consistency" and cfg["distill"]["init_from_teacher"] is True
    assert main(["sample", str(out), "--num", "8", "--steps", "1", "--out", str(tmp_path / "s.npz"), "--no-progress"]) == 0
    # resumes bit for bit: 4 + 4 steps end where 8 steps did
    half = tmp_path / "half"
    assert main(["distill", str(teacher), "--method", "consistency", "--out", str(half), "--steps", "4",
                 "--no-progress"]) == 0
    assert main(["distill", str(teacher), "--method", "consistency", "--out", str(half), "--steps", "8", "--resume",
                 "--no-progress"]) == 0
    from safetensors.torch import load_file

    from difflab import checkpoint
    a, b = (load_file(str(checkpoint.list_checkpoints(d)[-1] / "model.safetensors")) for d in (out, half))
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    for args, match in [([str(out), "--method", "consistency", "--out", str(tmp_path / "x")], "consistency model already"),
                        ([str(teacher), "--method", "consistency", "--to", "2", "--out", str(tmp_path / "x")], "--to and --from"),
                        ([str(teacher), "--method", "consistency", "--out", str(out)], "already holds files"),
                        ([str(teacher), "--out", str(tmp_path / "x")], "needs --to")]:
        assert main(["distill", *args]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_configs_refuse_a_consistency_loss_without_its_formulation():
    with pytest.raises(DifflabError, match="predicting consistency, not diffusion.parameterization 'eps'"):
        resolve({"preset": "8gaussians", "diffusion": {"loss": "consistency"}})
    with pytest.raises(DifflabError, match="go together"):
        resolve({"preset": "8gaussians-ct", "train": {"timestep_sampler": "uniform"}})
