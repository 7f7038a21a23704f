"""difflab.data_gaussian: the data's Gaussian, its exact denoiser and probability-flow map, against float64
recomputations, the isotropic mixture oracle and a many-step DDIM integration; and sampling that starts from it."""

import math

import pytest
import torch

import difflab
from difflab.data_gaussian import DataGaussian
from difflab.errors import DifflabError
from difflab.samplers.discretizations import discretize
from difflab.toy import GaussianMixture

D = 6


def _gaussian(rank=D, seed=0):
    """A random Gaussian over (1, 2, 3)-shaped examples: orthonormal basis of ``rank`` directions, the rest 0.3."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.rand(D, generator=g, dtype=torch.float64) * 2 + 0.05
    mean = torch.randn(D, generator=g, dtype=torch.float64)
    rest = 0.3 if rank < D else 0.0
    return DataGaussian(mean, q[:, :rank].contiguous(), lam[:rank].contiguous(), rest, (1, 2, 3))


def _covariance(g: DataGaussian) -> torch.Tensor:
    u = g.basis
    return u @ torch.diag(g.variances) @ u.T + g.rest * (torch.eye(g.dim, dtype=torch.float64) - u @ u.T)


@pytest.mark.parametrize("rank", [D, 3])
def test_posterior_mean_is_the_gaussian_conditional_mean(rank):
    g = _gaussian(rank)
    x = torch.randn(5, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cov = _covariance(g)
    for a, s in ((0.99, 0.1), (0.3, 0.95), (0.01, 1.0)):
        # E[x0 | x_t] = μ + a Σ (a² Σ + s² I)^{-1} (x_t − a μ), by a linear solve in float64
        d = x.reshape(5, -1) - a * g.mean
        want = g.mean + (a * cov @ torch.linalg.solve(a * a * cov + s * s * torch.eye(D, dtype=torch.float64), d.T)).T
        assert torch.allclose(g.posterior_mean(x, a, s).reshape(5, -1), want, atol=1e-12)


def test_isotropic_gaussian_matches_the_mixture_oracle():
    mean = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g = DataGaussian(mean, torch.eye(D, dtype=torch.float64), torch.full((D,), 0.49, dtype=torch.float64), 0.0, (D,))
    mix = GaussianMixture(mean[None], 0.7)
    x = torch.randn(7, D, dtype=torch.float64)
    a, s = torch.full((7,), 0.6, dtype=torch.float64), torch.full((7,), 0.8, dtype=torch.float64)
    assert torch.allclose(g.posterior_mean(x, 0.6, 0.8), mix.posterior_mean(x, a, s), atol=1e-12)


def test_fit_keeps_the_mean_and_the_leading_eigenpairs():
    x = torch.randn(400, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * torch.arange(1, 7).reshape(2, 3)
    full, low = DataGaussian.fit(x), DataGaussian.fit(x, rank=2)
    flat = x.reshape(400, -1)
    assert torch.allclose(full.mean, flat.mean(0)) and full.shape == (2, 3)
    assert torch.allclose(_covariance(full), torch.cov(flat.T), atol=1e-10)
    lam = torch.linalg.eigvalsh(torch.cov(flat.T)).flip(0)
    assert torch.allclose(low.variances, lam[:2]) and low.rest == pytest.approx(float(lam[2:].mean()))


def test_flow_composes_and_matches_many_ddim_steps_on_the_exact_denoiser():
    g = _gaussian(3)
    schedule = difflab.schedules.get("cosine", T=1000)

    def at(t):
        return float(schedule.alpha(torch.tensor(float(t), dtype=torch.float64))), \
            float(schedule.sigma(torch.tensor(float(t), dtype=torch.float64)))

    x = torch.randn(16, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    direct = g.flow(x, at(1000), at(300))
    assert torch.allclose(g.flow(g.flow(x, at(1000), at(700)), at(700), at(300)), direct, atol=1e-10)
    assert torch.allclose(g.flow(direct, at(300), at(1000)), x, atol=1e-10)  # the ODE runs backwards too
    # DDIM is the Euler method of the probability-flow ODE in σ̃ (Song et al. 2021, Eq. 14): with many small steps on
    # the exact denoiser it converges to the flow map
    ts = torch.linspace(1000.0, 300.0, 4001, dtype=torch.float64)
    den = g.denoiser(schedule)
    y = x.clone()
    for t, s in zip(ts[:-1], ts[1:]):  # DDIM steps t → s (η = 0), written out: x_s = α_s x̂_0 + σ_s ε̂
        p = den(y, t)
        a_s, s_s = at(s)
        y = a_s * p.x0 + s_s * p.eps
    assert torch.allclose(y, direct, atol=2e-3)


def test_sampling_from_the_gaussian_start_is_exact_on_gaussian_data():
    """On Gaussian data the network-free start changes nothing but the cost: from the same noise, a sampler run
    with gaussian_start lands where the same sampler run all the way does (both near the exact flow's end)."""
    g = _gaussian(D)
    schedule = difflab.schedules.get("cosine", T=1000)
    den = g.denoiser(schedule)
    x_T = torch.randn(32, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    full = difflab.sample(den, (32, 1, 2, 3), sampler="dpmpp_2m", steps=200, x_T=x_T.clone())
    started = difflab.sample(den, (32, 1, 2, 3), sampler="dpmpp_2m", steps=200, x_T=x_T.clone(), gaussian=g,
                             gaussian_start=5.0)
    assert torch.allclose(full, started, atol=5e-3)
    off = difflab.sample(den, (32, 1, 2, 3), sampler="ddim", steps=3, x_T=x_T.clone())
    on = difflab.sample(den, (32, 1, 2, 3), sampler="ddim", steps=3, x_T=x_T.clone(), gaussian=g, gaussian_start=5.0)
    assert (on - full).abs().max() < (off - full).abs().max()  # fewer steps spent where the ODE is easy


def test_discretization_from_a_start_time():
    schedule = difflab.schedules.get("cosine", T=1000)
    ts = discretize(schedule, 4, "trailing", t_start=800.0)
    assert torch.allclose(ts, torch.tensor([800.0, 600.0, 400.0, 200.0], dtype=torch.float64))
    k = discretize(schedule, 10, "karras", t_start=900.0)
    assert float(k[0]) == 900.0 and float(k[-1]) == float(schedule.t_min) and bool((k[1:] < k[:-1]).all())
    assert torch.equal(discretize(schedule, 5, "trailing", t_start=1000.0), discretize(schedule, 5, "trailing"))
    for name in ("leading", "sections:3,2"):
        with pytest.raises(DifflabError, match="fixed to the schedule's integer steps"):
            discretize(schedule, 5, name, t_start=800.0)


def test_gaussian_start_time_and_bad_input():
    from difflab.samplers import gaussian_start_time

    schedule = difflab.schedules.get("cosine", T=1000)
    g = _gaussian()
    t = gaussian_start_time(schedule, g, 20.0)
    a, s = float(schedule.alpha(torch.tensor(t, dtype=torch.float64))), float(schedule.sigma(torch.tensor(t, dtype=torch.float64)))
    assert s / a == pytest.approx(20.0, rel=1e-6)
    assert gaussian_start_time(schedule, g, 1e6) is None  # the schedule never gets that noisy: nothing to carry
    with pytest.raises(DifflabError, match="needs the data's Gaussian"):
        gaussian_start_time(schedule, None, 20.0)
    with pytest.raises(DifflabError, match="σ̃ = σ/α > 0"):
        gaussian_start_time(schedule, g, -1.0)
    with pytest.raises(DifflabError, match="without gaussian_start"):
        gaussian_start_time(schedule, g, None)
    with pytest.raises(DifflabError, match="examples of shape"):
        g.posterior_mean(torch.zeros(2, 6), 0.5, 0.5)


def test_save_load_round_trip_and_a_corrupt_file(tmp_path):
    g = _gaussian(3)
    path = g.save(tmp_path / "gaussian.safetensors")
    back = DataGaussian.load(path)
    assert back.shape == g.shape and back.rest == pytest.approx(g.rest)
    assert torch.allclose(back.basis, g.basis.float().double()) and torch.allclose(back.mean, g.mean.float().double())
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DifflabError, match="is not a difflab data Gaussian"):
        DataGaussian.load(tmp_path / "bad.safetensors")
    assert math.isfinite(back.rest)


def _copy_shipped(tmp_path, **sample):
    import json
    import shutil

    from difflab.pretrained import shipped_path

    where = tmp_path / "mnist"
    shutil.copytree(shipped_path("mnist"), where)
    cfg = json.loads((where / "config.json").read_text())
    cfg["sample"].update(sample)
    (where / "config.json").write_text(json.dumps(cfg))
    return where


def test_a_run_samples_from_the_gaussian_start_its_config_records(tmp_path):
    run = difflab.load(_copy_shipped(tmp_path, sampler="ddim", steps=3, gaussian_start=5.0))
    assert run.gaussian is not None and run.gaussian.shape == (1, 28, 28)
    x_T = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    by_default = run.sample(4, x_T=x_T.clone())
    by_hand = run.normalization.to_data(difflab.sample(run.denoiser, (4, 1, 28, 28), sampler="ddim", steps=3,
                                                       x_T=x_T.clone(), gaussian=run.gaussian, gaussian_start=5.0))
    plain = run.normalization.to_data(difflab.sample(run.denoiser, (4, 1, 28, 28), sampler="ddim", steps=3,
                                                     x_T=x_T.clone()))
    assert torch.equal(by_default, by_hand) and not torch.allclose(by_default, plain)
    assert torch.equal(run.sample(4, x_T=x_T.clone(), gaussian_start=0), plain)  # 0 turns it off
    assert torch.equal(run.sample(4, x_T=x_T.clone(), sampler="dpmpp_2m"),  # another sampler: the model's start is its own
                       run.normalization.to_data(difflab.sample(run.denoiser, (4, 1, 28, 28), sampler="dpmpp_2m",
                                                                steps=3, x_T=x_T.clone())))


def test_a_run_without_its_gaussian_says_so(tmp_path):
    where = _copy_shipped(tmp_path, gaussian_start=5.0)
    (where / "gaussian.safetensors").unlink()
    run = difflab.load(where)
    with pytest.raises(DifflabError, match="has no gaussian.safetensors"):
        run.sample(2, steps=2)
    assert run.sample(2, steps=2, gaussian_start=0).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("key,value,message", [
    ("gaussian_start", -1.0, "must be a noise level"),
    ("gaussian_start", "high", "must be a noise level"),
    ("discretization", "zigzag", "is not one of"),
])
def test_config_refuses_a_bad_sampling_start(key, value, message):
    from difflab.config import resolve, validate

    cfg = resolve("digits")
    cfg["sample"][key] = value
    with pytest.raises(DifflabError, match=message):
        validate(cfg)


def test_fit_gaussian_command_writes_the_runs_gaussian(tmp_path, capsys):
    from difflab.cli.main import main

    where = _copy_shipped(tmp_path)
    (where / "gaussian.safetensors").unlink()
    assert main(["fit-gaussian", str(where), "--rank", "64"]) == 0
    g = DataGaussian.load(where / "gaussian.safetensors")
    assert g.basis.shape == (784, 64) and g.rest > 0
    assert main(["fit-gaussian", "mnist"]) == 2 and "read-only" in capsys.readouterr().err


def test_export_carries_the_runs_gaussian(train_toy, tmp_path):
    """A toy run's Gaussian (fit-gaussian works on any run) travels with the exported model, and the export samples
    from the start its config asks for."""
    from difflab.cli.main import main
    from difflab.pretrained import export

    run_dir = train_toy("8gaussians", 20)
    assert main(["fit-gaussian", str(run_dir)]) == 0
    out = export(run_dir, tmp_path / "exported")
    assert (out / "gaussian.safetensors").read_bytes() == (run_dir / "gaussian.safetensors").read_bytes()
    run = difflab.load(out)
    assert run.sample(8, steps=4, gaussian_start=2.0).shape == (8, 2)
