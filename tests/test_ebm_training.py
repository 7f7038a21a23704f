"""Energy-based training in the one loop, against exact answers: contrastive divergence learns a density whose
normaliser, by quadrature, gives the true held-out log-likelihood; the 8-Gaussians energy covers every mode; the
score-matching objectives and an RBM train; runs resume bit for bit; and the CLI trains and samples them."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from difflab import checkpoint
from difflab.cli.main import main
from difflab.data import Dataset
from difflab.data.toys import GAUSSIANS8_CENTRES
from difflab.ebm.run import load
from difflab.errors import DifflabError
from difflab.toy import GaussianMixture
from difflab.training.ebm import EBMTrainable, resolve, train_ebm
from difflab.training.loop import LoopOptions, fit

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"progress": False, "log": lambda *a: None}
# two overlapping components, so that Langevin chains cross between them and CD can learn their weights
MIX = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.5, 0.5], [0.3, 0.7])


class MixtureEBM(EBMTrainable):
    """The energy-based trainable on draws of :data:`MIX` (the config's data section names only the kind)."""

    def dataset(self):
        return Dataset("mixture", "toy", MIX.sample(20_000, torch.Generator().manual_seed(0)).float(), None)


def quadrature_log_likelihood(run, x: torch.Tensor, half_width: float = 5.0, n: int = 501) -> torch.Tensor:
    """log p(x) in data units with log Z = log Σ exp(−E) ΔA over a grid of model coordinates."""
    g = torch.linspace(-half_width, half_width, n)
    z = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_z = float(torch.logsumexp(-run.energy(z).double(), 0)) + 2 * math.log(float(g[1] - g[0]))
        return -run.energy(run.norm.to_model(x.float())).double() - log_z - 2 * math.log(run.norm.scale)


def test_cd_learns_the_density_its_quadrature_normaliser_confirms(tmp_path):
    """1,500 CD steps with persistent chains (Langevin τ = 0.03, the scale of the components) on a two-component
    mixture: the held-out log-likelihood of the learned
    density (normalised by quadrature) is within 0.1 nats of the true mixture's (the noise of its 4,000-point
    mean is about 0.02), and the mode weights within 0.05 of 0.3 / 0.7."""
    cfg = resolve({"preset": "8gaussians-ebm", "ebm": {"buffer": 4000, "step_size": 0.03},
                   "train": {"steps": 1500, "save_every": 1500, "log_every": 500, "batch_size": 256}})
    out = tmp_path / "mix"
    fit(MixtureEBM(cfg), out, LoopOptions.from_section(cfg["train"]), 0, **QUIET)
    run = load(out)
    held_out = MIX.sample(4000, torch.Generator().manual_seed(9))
    ll, truth = quadrature_log_likelihood(run, held_out), MIX.log_prob(held_out)
    assert float(ll.mean()) == pytest.approx(float(truth.mean()), abs=0.1)
    g = torch.linspace(-5, 5, 501)
    z = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        p = torch.softmax(-run.energy(z).double(), 0)
    x = run.norm.to_data(z).double()
    left = p[(x - MIX.means[0]).norm(dim=1) < (x - MIX.means[1]).norm(dim=1)].sum()
    # the exact mass nearer the first mean, by the same grid
    q = torch.softmax(MIX.log_prob(x), 0)
    want = q[(x - MIX.means[0]).norm(dim=1) < (x - MIX.means[1]).norm(dim=1)].sum()
    assert float(left) == pytest.approx(float(want), abs=0.05)


@pytest.fixture(scope="module")
def gaussians_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ebm") / "8g"
    cfg = resolve({"preset": "8gaussians-ebm", "data": {"num": 20_000}, "ebm": {"buffer": 4000},
                   "train": {"steps": 1000, "save_every": 500, "log_every": 250}})
    train_ebm(cfg, out, **QUIET)
    return out


def test_8gaussians_energy_covers_every_mode(gaussians_run):
    """MALA from uniform starts (the preset's sampler): every one of the 8 modes holds at least 4% of 2,000 samples,
    and most samples lie within 0.5 of a centre (component std 0.1)."""
    run = load(gaussians_run)
    x = run.sample(2000, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1)
    near = d.values < 0.5
    counts = torch.bincount(d.indices[near], minlength=8)
    assert float(near.double().mean()) > 0.6
    assert int(counts.min()) > 0.04 * 2000, counts.tolist()
    assert 0.3 < run.last_acceptance < 1


def test_training_logs_nijkamp_s_diagnostics_and_writes_a_picture(gaussians_run):
    header = (gaussians_run / "log.csv").read_text().splitlines()[0].split(",")
    assert "energy_data" in header and "energy_model" in header
    assert (gaussians_run / "samples" / "step_00001000.png").exists()
    assert json.loads((gaussians_run / "config.json").read_text())["kind"] == "ebm"


def test_resume_is_bit_exact_with_the_replay_buffer(tmp_path):
    cfg = resolve({"preset": "8gaussians-ebm", "data": {"num": 2000},
                   "ebm": {"buffer": 300, "chain_steps": 5},
                   "train": {"steps": 8, "batch_size": 32, "save_every": 4, "log_every": 2, "num_samples": 50}})
    train_ebm(cfg, tmp_path / "full", **QUIET)
    train_ebm(cfg, tmp_path / "part", steps=4, **QUIET)
    train_ebm(None, tmp_path / "part", steps=8, resume=True, **QUIET)
    a = checkpoint.latest_valid(tmp_path / "full")
    b = checkpoint.latest_valid(tmp_path / "part")
    for name in ("model", "ema", "trainer"):
        ta, tb = load_file(str(a / f"{name}.safetensors")), load_file(str(b / f"{name}.safetensors"))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)


@pytest.mark.parametrize("objective", ["exact", "sliced", "sliced-vr", "denoising"])
def test_score_matching_objectives_lower_the_energy_of_the_data(tmp_path, objective):
    """300 steps: the energy is lower on the data than on uniform points over the same box, by a margin."""
    cfg = resolve({"preset": "8gaussians-ebm", "data": {"num": 5000},
                   "ebm": {"objective": objective, "sigma": 0.1},
                   "train": {"steps": 300, "batch_size": 128, "save_every": 300, "log_every": 100, "num_samples": 100}})
    train_ebm(cfg, tmp_path / objective, **QUIET)
    run = load(tmp_path / objective)
    data = run.norm.to_model(GaussianMixture(GAUSSIANS8_CENTRES, 0.1).sample(2000, torch.Generator().manual_seed(1)).float())
    box = -2 + 4 * torch.rand(2000, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float(run.energy(box).mean() - run.energy(data).mean()) > 1.0


def test_a_noise_conditional_energy_samples_by_annealed_langevin(tmp_path):
    """Denoising score matching over σ in [0.05, 3] (standardised units): the energy is a denoiser over those levels,
    and annealed Langevin (the diffusion samplers' Algorithm 1) puts most samples near the 8 centres."""
    cfg = resolve({"preset": "8gaussians-ebm", "data": {"num": 20_000},
                   "model": {"noise_conditional": True, "base_std": None},
                   "ebm": {"objective": "denoising", "sigma": 0.05, "sigma_max": 3.0},
                   "train": {"steps": 1200, "batch_size": 256, "save_every": 1200, "log_every": 400}})
    train_ebm(cfg, tmp_path / "nc", **QUIET)
    run = load(tmp_path / "nc")
    x = run.sample(1000, sampler="annealed-langevin", steps=20, generator=torch.Generator().manual_seed(0),
                   n_steps_each=20)
    d = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1)
    assert float((d.values < 0.5).double().mean()) > 0.6
    assert int(torch.bincount(d.indices, minlength=8).min()) > 30


def test_an_rbm_on_digits_beats_independent_pixels(tmp_path):
    """Persistent CD on binarised digits (1,500 steps): the AIS log-likelihood of the held-out images exceeds that of
    the best model of independent pixels (each a Bernoulli with the pixel's training frequency), a closed form."""
    cfg = resolve({"preset": "digits-rbm", "train": {"save_every": 1500, "log_every": 500}})
    train_ebm(cfg, tmp_path / "rbm", **QUIET)
    result = json.loads((tmp_path / "rbm" / "eval.json").read_text())
    from difflab.data import load_dataset

    v = (load_dataset("digits").data > 0.5).double().flatten(1)
    p = v.mean(0).clamp(1e-3, 1 - 1e-3)
    test = (load_dataset("digits", num=297, split="test").data > 0.5).double().flatten(1)
    independent = float((test * p.log() + (1 - test) * (1 - p).log()).sum(1).mean())
    assert result["log_likelihood_nats"] > independent + 4, (result, independent)  # −17.4 against −23.8
    assert result["log_z_se"] < 0.5
    run = load(tmp_path / "rbm")
    x = run.sample(16, generator=torch.Generator().manual_seed(0))
    assert x.shape == (16, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_cd_k_from_the_data_also_trains_an_rbm(tmp_path):
    """CD-1 with each chain started at its training example (Hinton 2002; ebm.buffer 0, ebm.init data) also beats
    independent pixels on digits."""
    cfg = resolve({"preset": "digits-rbm", "ebm": {"buffer": 0, "init": "data"},
                   "train": {"steps": 1000, "save_every": 1000, "log_every": 500}})
    train_ebm(cfg, tmp_path / "cd1", **QUIET)
    result = json.loads((tmp_path / "cd1" / "eval.json").read_text())
    assert result["log_likelihood_nats"] > -23.8 + 3


def test_cli_trains_and_samples_an_energy_based_run(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "8gaussians-ebm", "--out", str(out), "--steps", "20", "--no-progress"]) in (0, None)
    for sampler in ("metropolis", "langevin", "mala", "hmc", "short-run"):
        npz = tmp_path / f"{sampler}.npz"
        code = main(["sample", str(out), "--sampler", sampler, "--steps", "5", "--num", "30", "--out", str(npz),
                     "--no-progress"])
        assert code in (0, None)
        assert np.load(npz)["samples"].shape == (30, 2)
    printed = capsys.readouterr().out
    assert "acceptance" in printed


@pytest.mark.parametrize("args,message", [
    (["--sampler", "ddim"], "sampler 'ddim' does not apply to this energy-mlp run; expected one of metropolis"),
    (["--sampler", "gibbs"], "sampler 'gibbs' does not apply to this energy-mlp run"),
    (["--eta", "0.5"], "--eta applies to diffusion models"),
    (["--option", "step_size=0"], "step size must be a finite number > 0"),
    (["--option", "step_size=1e9", "--sampler", "langevin"], "NaN or infinite"),
])
def test_cli_refuses_bad_sampling_of_an_energy_run(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    main(["train", "8gaussians-ebm", "--out", str(out), "--steps", "2", "--no-progress"])
    npz = tmp_path / "s.npz"
    code = main(["sample", str(out), "--num", "10", "--steps", "50", "--out", str(npz), "--no-progress", *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not npz.exists()


@pytest.mark.parametrize("override,message", [
    ({"ebm": {"objective": "contrastive"}}, "ebm.objective must be one of cd, exact, sliced, sliced-vr, denoising"),
    ({"ebm": {"step_size": 0}}, "ebm.step_size"),
    ({"ebm": {"step_size": -1.0}}, "ebm.step_size"),
    ({"ebm": {"sigma_max": 2.0}}, "needs a noise-conditional energy"),
    ({"model": {"noise_conditional": True}}, "learns by denoising score matching over a range"),
    ({"sample": {"sampler": "gibbs"}}, "sample.sampler must be one of metropolis, langevin, mala, hmc"),
    ({"sample": {"step_size": 0.0}}, "step size must be a finite number > 0"),
    ({"model": {"type": "energy-unet"}}, "energy model type 'energy-unet' is unknown"),
    ({"model": {"depth": 0}}, "energy-mlp option 'depth' must be an integer >= 1"),
    ({"ebm": {"init": "zeros"}}, "ebm.init \\(where fresh chains start\\) must be noise or data"),
])
def test_bad_energy_configs_are_refused(override, message):
    with pytest.raises(DifflabError, match=message):
        resolve({"preset": "8gaussians-ebm", **override})


def test_an_rbm_must_use_cd_and_binary_pixels():
    with pytest.raises(DifflabError, match="an RBM learns by contrastive divergence"):
        resolve({"preset": "digits-rbm", "ebm": {"objective": "sliced"}})
    with pytest.raises(DifflabError, match="set data.binarize to true with model type rbm"):
        resolve({"preset": "digits-rbm", "data": {"binarize": False}})


def test_exact_score_matching_refuses_images_of_many_pixels(tmp_path, monkeypatch):
    import difflab.training.ebm as ebm_training

    monkeypatch.setattr(ebm_training, "EXACT_MAX_DIM", 16)
    cfg = resolve({"preset": "digits-ebm", "ebm": {"objective": "exact"}, "train": {"steps": 1}})
    with pytest.raises(DifflabError, match="exact score matching costs one backward pass per dimension"):
        train_ebm(cfg, tmp_path / "x", **QUIET)
    assert not (tmp_path / "x" / "config.json").exists()
