"""Improved DDPM wired through the library (Nichol & Dhariwal 2021): the config keys, training with
L_hybrid / L_vlb and loss-second-moment timestep sampling (exact resume included), learned-variance
denoisers under every sampler, DDPM with respaced learned variances (against float64 recomputations and
an exact Gaussian oracle), and `difflab likelihood --method vlb`."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import difflab
from difflab import schedules
from difflab.cli.main import main
from difflab.config import resolve
from difflab.data import load_dataset
from difflab.denoiser import ModelDenoiser, Prediction
from difflab.errors import DifflabError
from difflab.models import build_model
from difflab.random import randn
from difflab.run import Normalization
from difflab.samplers import discretize, spaced_timesteps
from difflab import checkpoint
from difflab.training.state import DataOrder
from difflab.training.diffusion import train
from difflab.variational_bound import (clipped_log_posterior_variance, full_bound, hybrid_losses, model_predictor,
                                       respaced_log_variances)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: OpenMP threads cost more than they save

T = 20
TINY_UNET = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [], "groups": 8}


def tiny(loss="hybrid", sampler="uniform", steps=5, **train_kw):
    """A digits config at 8x8 with an 8-channel U-Net and T = 20."""
    learned = loss != "simple"
    return {"preset": "digits", "model": dict(TINY_UNET),
            "diffusion": {"T": T, "loss": loss, "learned_variance": learned},
            "train": {"steps": steps, "batch_size": 16, "log_every": 1, "save_every": 0, "sample_every": 0,
                      "num_samples": 4, "keep": 10, "timestep_sampler": sampler, **train_kw},
            "sample": {"steps": 5}, "data": {"num": 96}}


def _train(config, out, **kw):
    return train(resolve(config) if config is not None else None, out, progress=False, log=lambda *_: None, **kw)


def _log(run):
    return [r.split(",")[:2] for r in (run / "log.csv").read_text().splitlines()]


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    """5 steps of L_hybrid (λ = 0.01, not the default) with a checkpoint after every step."""
    cfg = tiny("hybrid", save_every=1)
    cfg["diffusion"]["vlb_weight"] = 0.01
    return _train(cfg, tmp_path_factory.mktemp("lv") / "hybrid")


# --------------------------------------------------------------------------- config

def test_config_defaults_and_learned_variance_output_channels():
    plain = resolve({"preset": "digits"})
    assert (plain["diffusion"]["loss"], plain["diffusion"]["learned_variance"], plain["diffusion"]["vlb_weight"]) == \
        ("simple", False, 0.001)
    assert plain["train"]["timestep_sampler"] == "uniform" and plain["model"]["out_channels"] is None
    learned = resolve(tiny("vlb", "loss-second-moment"))
    assert learned["model"]["out_channels"] == 2 and build_model(learned["model"])(
        torch.zeros(3, 1, 8, 8), torch.ones(3)).shape == (3, 2, 8, 8)
    rgb = tiny("hybrid")
    rgb["model"]["in_channels"] = 3
    rgb["data"]["channels"] = 3
    assert resolve(rgb)["model"]["out_channels"] == 6
    given = tiny("hybrid")
    given["model"]["out_channels"] = 2
    assert resolve(given)["model"]["out_channels"] == 2


@pytest.mark.parametrize("change, match", [
    ({"diffusion": {"loss": "mse"}}, "diffusion.loss must be one of simple, vdm, hybrid, vlb"),
    ({"diffusion": {"loss": "hybrid", "learned_variance": False}}, "set diffusion.learned_variance: true"),
    ({"diffusion": {"loss": "simple", "learned_variance": True}}, "no gradient"),
    ({"diffusion": {"learned_variance": "yes"}}, "diffusion.learned_variance must be true or false"),
    ({"diffusion": {"vlb_weight": 0}}, "diffusion.vlb_weight"),
    ({"diffusion": {"vlb_weight": "big"}}, "diffusion.vlb_weight"),
    ({"diffusion": {"vlb_weight": True}}, "diffusion.vlb_weight"),
    ({"diffusion": {"parameterization": "v"}}, "parameterization 'eps'"),
    ({"train": {"timestep_sampler": "importance"}}, "train.timestep_sampler must be one of uniform, loss-second-moment"),
    ({"model": {"out_channels": 1}}, r"model.out_channels = 1 contradicts the config: it must be 2 x model.in_channels = 2"),
    ({"model": {"out_channels": 2}, "diffusion": {"loss": "simple", "learned_variance": False}},
     r"model.out_channels = 2 contradicts the config: it must be model.in_channels = 1 unless diffusion.learned_variance"),
])
def test_config_rejects_bad_objective_keys(change, match):
    cfg = tiny("hybrid")
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(DifflabError, match=match):
        resolve(cfg)


def test_config_rejects_learned_variance_off_images_and_continuous_schedules():
    with pytest.raises(DifflabError, match="needs an image model"):
        resolve({"preset": "8gaussians", "diffusion": {"loss": "vlb", "learned_variance": True}})
    with pytest.raises(DifflabError, match="needs a discrete schedule"):
        resolve({"preset": "digits-vp", "diffusion": {"loss": "hybrid", "learned_variance": True}})
    with pytest.raises(DifflabError, match="train.timestep_sampler = 'loss-second-moment' needs a discrete schedule"):
        resolve({"preset": "8gaussians-vp", "train": {"timestep_sampler": "loss-second-moment"}})
    # allowed, if not IDDPM's use: importance sampling of L_simple
    assert resolve({"preset": "8gaussians", "train": {"timestep_sampler": "loss-second-moment"}})


def test_cli_train_bad_objective_is_one_sentence(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("preset: digits\ndiffusion: {loss: vlb}\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "diffusion.loss = 'vlb' trains a learned variance; set diffusion.learned_variance: true." in err
    assert not (tmp_path / "run").exists()


def test_a_run_saved_before_the_new_keys_still_resumes(tiny_toy_config, tmp_path):
    run = train(resolve(str(tiny_toy_config)), tmp_path / "old", steps=2, progress=False, log=lambda *_: None)
    cfg = json.loads((run / "config.json").read_text())
    for key in ("loss", "learned_variance", "vlb_weight"):
        del cfg["diffusion"][key]
    del cfg["train"]["timestep_sampler"]
    (run / "config.json").write_text(json.dumps(cfg))
    train(resolve(str(tiny_toy_config)), run, steps=3, resume=True, progress=False, log=lambda *_: None)
    assert difflab.load(run).step == 3


# --------------------------------------------------------------------------- training

def test_hybrid_step_loss_equals_hybrid_losses_recomputed_by_hand(hybrid_run):
    """Step 5's logged loss is the batch mean of hybrid_losses on the batch the trainer drew: rebuilt here from
    the step-4 checkpoint (weights, data order, generator states), with λ = 0.01 from the config."""
    cfg = checkpoint.read_config(hybrid_run)
    ckpt = checkpoint.list_checkpoints(hybrid_run)[3]
    assert ckpt.name == "ckpt-00000004"
    state = json.loads((ckpt / "state.json").read_text())
    extra = checkpoint.load_tensors(ckpt, "trainer")
    assert not [k for k in extra if k.startswith("sampler.")]  # the uniform sampler keeps no state
    model = build_model(cfg["model"])
    model.load_state_dict(checkpoint.load_tensors(ckpt, "model"))
    d = cfg["data"]
    dataset = load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=d["num"],
                           seed=cfg["seed"])
    data = Normalization.from_config(cfg["normalization"]).to_model(dataset.data)
    data_gen, noise_gen = torch.Generator(), torch.Generator()
    data_gen.set_state(extra["rng.data"])
    noise_gen.set_state(extra["rng.noise"])
    order = DataOrder(data.shape[0], 16, torch.Generator())
    order.perm, order.pos, order.generator = extra["data.perm"].long(), state["data_pos"], data_gen
    x0 = data[order.next()]
    t = torch.randint(1, T + 1, (16,), generator=noise_gen)
    eps = randn(x0.shape, noise_gen, None, x0.dtype)
    schedule = schedules.get(cfg["diffusion"]["schedule"], T)
    with torch.no_grad():
        parts = hybrid_losses(ModelDenoiser(model, schedule, learned_variance=True), x0, t, noise=eps, lam=0.01)
    logged = float(_log(hybrid_run)[5][1])
    assert _log(hybrid_run)[5][0] == "5"
    assert logged == pytest.approx(float(parts["loss"].mean()), rel=2e-5)
    # the λ part is there: without it the loss would be L_simple alone
    assert abs(float(parts["mse"].mean()) - logged) > 1e-3 * logged


def test_the_vlb_objective_trains_the_mean_and_the_hybrid_bound_term_does_not():
    """IDDPM Sec. 3.1: inside L_hybrid the bound term sees a detached ε̂ (it trains only the variance); trained
    alone (Sec. 3.3) the bound must train the mean too."""
    sched = schedules.get("cosine", T)
    x0 = torch.randint(0, 256, (8, 1, 4, 4), generator=torch.Generator().manual_seed(0)) / 255 * 2 - 1
    t = torch.arange(1, 9)
    grads = {}
    for objective in ("hybrid", "vlb"):
        out = (0.3 * torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
        parts = hybrid_losses(ModelDenoiser(lambda x, time: out, sched, learned_variance=True), x0, t, generator=torch.Generator().manual_seed(2),
                              objective=objective)
        parts["vlb"].sum().backward()
        grads[objective] = out.grad
    assert grads["hybrid"][:, :1].abs().max() == 0 and grads["hybrid"][:, 1:].abs().min() > 0
    assert grads["vlb"][:, :1].abs().min() > 0
    torch.testing.assert_close(grads["vlb"][:, 1:], grads["hybrid"][:, 1:])
    with pytest.raises(DifflabError, match="unknown objective"):
        hybrid_losses(ModelDenoiser(lambda x, time: out, sched, learned_variance=True), x0, t, objective="simple")


def _final_tensors(run, name):
    return load_file(str(checkpoint.list_checkpoints(run)[-1] / f"{name}.safetensors"))


def vlb_lsm_config():
    """L_vlb with loss-second-moment sampling on a class-conditional model: 20 steps of 32 examples."""
    cfg = tiny("vlb", "loss-second-moment", steps=20, batch_size=32)
    cfg["model"]["num_classes"] = 10
    return cfg


@pytest.fixture(scope="module")
def vlb_straight(one_thread, tmp_path_factory):
    return _train(vlb_lsm_config(), tmp_path_factory.mktemp("lsm") / "straight")


def test_vlb_with_loss_second_moment_sampling_resumes_bit_for_bit(vlb_straight, tmp_path):
    """Stopped at step 12 (the sampler already past its warm-up, so the resumed steps draw t non-uniformly)
    and resumed, the run ends where an uninterrupted run ends, bit for bit, sampler state included."""
    straight = vlb_straight
    first = _train(vlb_lsm_config(), tmp_path / "split", steps=12)
    mid = checkpoint.load_tensors(checkpoint.list_checkpoints(first)[-1], "trainer")
    assert mid["sampler.loss_counts"].tolist() == [10] * T  # warmed up: p_t ∝ √E[L_t²] from here on
    resumed = _train(None, first, steps=20, resume=True)
    for name in ("model", "ema", "trainer"):
        a, b = _final_tensors(straight, name), _final_tensors(resumed, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert _log(straight) == _log(resumed)
    history = _final_tensors(straight, "trainer")["sampler.loss_history"]
    assert history.dtype == torch.float64 and history.shape == (T, 10) and bool((history > 0).all())


def test_the_sampler_records_every_micro_batch(tmp_path):
    """With gradient accumulation the sampler still sees the whole batch: the same timesteps are recorded
    and the same losses, up to the float rounding of smaller convolutions."""
    runs = [_train(tiny("hybrid", "loss-second-moment", steps=3), tmp_path / f"k{k}", grad_accum=k) for k in (1, 2)]
    a, b = (_final_tensors(r, "trainer") for r in runs)
    assert torch.equal(a["sampler.loss_counts"], b["sampler.loss_counts"]) and int(a["sampler.loss_counts"].sum()) == 48
    torch.testing.assert_close(a["sampler.loss_history"], b["sampler.loss_history"], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- denoiser and samplers

class EpsNet(torch.nn.Module):
    """A fixed smooth ε-network on 2-D points, and the same with a learned variance: 2C outputs."""

    def __init__(self, learned: bool):
        super().__init__()
        self.learned = learned

    def forward(self, x, t):
        tt = t.reshape(-1, 1).to(x.dtype) / 1000
        eps = torch.tanh(x) * (0.5 + tt) + 0.1 * x.flip(1)
        return torch.cat([eps, torch.sin(3 * x) * 0.9], 1) if self.learned else eps


def test_learned_variance_denoiser_takes_the_first_c_channels():
    sched = schedules.get("linear", 1000)
    plain = ModelDenoiser(EpsNet(False), sched, clip_x0=(-1.5, 1.5))
    learned = ModelDenoiser(EpsNet(True), sched, clip_x0=(-1.5, 1.5), learned_variance=True)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 2
    a, b = plain(x, 300), learned(x, 300)
    assert torch.equal(a.eps, b.eps) and torch.equal(a.x0, b.x0) and a.v_raw is None
    torch.testing.assert_close(b.v_raw, torch.sin(3 * x) * 0.9)
    assert learned.with_labels(None).learned_variance
    assert Prediction(eps=x, x0=x).v_raw is None  # old call sites keep working
    with pytest.raises(DifflabError, match="must output 2 x 2 = 4 channels"):
        ModelDenoiser(EpsNet(False), sched, learned_variance=True)(x, 300)


@pytest.mark.parametrize("sampler, options", [("ddim", {"eta": 0.0}), ("ddim", {"eta": 1.0}), ("euler", {}),
                                               ("heun", {}), ("dpm_solver", {"order": 2}), ("ddpm", {"variance": "beta"})])
def test_samplers_of_eps_and_x0_run_unchanged_on_a_learned_variance_model(sampler, options):
    sched = schedules.get("linear", 1000)
    plain = ModelDenoiser(EpsNet(False), sched)
    learned = ModelDenoiser(EpsNet(True), sched, learned_variance=True)
    runs = [difflab.sample(d, (256, 2), sampler=sampler, steps=10, generator=torch.Generator().manual_seed(1), **options)
            for d in (plain, learned)]
    assert torch.isfinite(runs[0]).all() and torch.equal(runs[0], runs[1])


def test_respaced_variances_on_the_full_sequence_are_the_schedule_tables():
    for name in ("linear", "cosine"):
        s = schedules.get(name, 1000)
        log_beta, log_beta_tilde = respaced_log_variances(s, torch.arange(1000, 0, -1))
        np.testing.assert_allclose(log_beta.exp().numpy(), s.betas[1:].flip(0).numpy(), rtol=1e-9)
        tilde = s.posterior_variance.clone()
        tilde[1] = s.posterior_variance[2]  # the clipped table's first entry
        np.testing.assert_allclose(log_beta_tilde.exp().numpy(), tilde[1:].flip(0).numpy(), rtol=1e-9)
        np.testing.assert_allclose(log_beta_tilde.numpy(), clipped_log_posterior_variance(s)[1:].flip(0).numpy(), rtol=1e-9)


@pytest.mark.parametrize("timesteps", [spaced_timesteps(1000, 50), spaced_timesteps(1000, 7, "leading"),
                                       discretize(schedules.get("linear", 1000), 25, "sections:10,10,5"), [1000]])
def test_respaced_variances_on_a_subsequence_match_a_float64_recomputation(timesteps):
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.concatenate([[1.0], np.cumprod(1 - betas)])
    ts = [int(t) for t in timesteps]
    ss = ts[1:] + [0]
    beta = np.array([1 - ab[t] / ab[s] for t, s in zip(ts, ss)])
    tilde = np.array([(1 - ab[s]) / (1 - ab[t]) * b for t, s, b in zip(ts, ss, beta)])
    tilde[-1] = tilde[-2] if len(ts) > 1 else beta[-1]  # last step to 0: clipped
    log_beta, log_beta_tilde = respaced_log_variances(schedules.get("linear", 1000), torch.tensor(ts))
    np.testing.assert_allclose(log_beta.numpy(), np.log(beta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(log_beta_tilde.numpy(), np.log(tilde), rtol=1e-10, atol=1e-12)
    with pytest.raises(DifflabError, match="decreasing sequence"):
        respaced_log_variances(schedules.get("linear", 1000), torch.tensor([5, 10]))


class GaussianOracle:
    """Data N(M, S²) in 1-D: the exact x̂_0 = E[x_0 | x_t], and v_raw that makes the respaced DDPM step t → s
    draw from the exact q(x_s | x_t): Var(x_s | x_t) = Var x_s − Cov(x_s, x_t)²/Var x_t, written as
    exp(v log β_{t,s} + (1 − v) log β̃_{t,s}) — all in float64 from ᾱ, here. ``v_raw`` may instead be fixed."""

    M, S = 0.7, 0.5

    def __init__(self, schedule, timesteps, v_raw=None):
        self.schedule, self.fixed = schedule, v_raw
        ts = [int(t) for t in timesteps]
        self.next = dict(zip(ts, ts[1:] + [0]))
        self.ab = schedule.alpha_bar.numpy()

    def __call__(self, x_t, t):
        t = int(torch.as_tensor(t).reshape(-1)[0])
        s, ab = self.next[t], self.ab
        a_t, a_s, S2 = math.sqrt(ab[t]), math.sqrt(ab[s]), self.S**2
        var_t = a_t**2 * S2 + 1 - ab[t]
        x0 = self.M + a_t * S2 / var_t * (x_t.double() - a_t * self.M)
        eps = (x_t.double() - a_t * x0) / math.sqrt(1 - ab[t])
        if self.fixed is not None:
            v_raw = torch.full_like(x_t, self.fixed)
        elif s == 0:
            v_raw = torch.zeros_like(x_t)  # no noise on the last step
        else:
            var_s = a_s**2 * S2 + 1 - ab[s]
            cov = a_s * a_t * S2 + (a_t / a_s) * (1 - ab[s])
            want = var_s - cov**2 / var_t
            beta = 1 - ab[t] / ab[s]
            tilde = (1 - ab[s]) / (1 - ab[t]) * beta
            v = (math.log(want) - math.log(tilde)) / (math.log(beta) - math.log(tilde))
            assert 0 < v < 1
            v_raw = torch.full_like(x_t, 2 * v - 1)
        return Prediction(eps=eps.to(x_t.dtype), x0=x0.to(x_t.dtype), v_raw=v_raw)


def _ddpm(denoiser, n=20_000, **options):
    x_T = torch.randn(n, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return difflab.sample(denoiser, (n, 1), sampler="ddpm", steps=8, discretization="leading", x_T=x_T,
                          generator=torch.Generator().manual_seed(6), **options)


def test_ddpm_with_learned_variance_samples_the_gaussian_exactly_on_a_subsequence():
    """With the exact mean and the exact reverse variance expressed through v on the respaced chain, 8 DDPM
    steps of a 1000-step schedule give N(M, S²); β̃ (too little noise) and β (too much) do not."""
    sched = schedules.get("linear", 1000)
    ts = discretize(sched, 8, "leading")
    oracle = GaussianOracle(sched, ts)
    x = _ddpm(oracle)  # learned, the default when predictions carry v_raw
    n, M, S = x.shape[0], GaussianOracle.M, GaussianOracle.S
    assert abs(float(x.mean()) - M) < 4 * S / math.sqrt(n)
    assert abs(float(x.std()) - S) < 4 * S / math.sqrt(2 * n)
    assert torch.equal(x, _ddpm(oracle, variance="learned"))
    assert float(_ddpm(oracle, variance="beta_tilde").std()) < S - 10 * S / math.sqrt(2 * n)
    assert float(_ddpm(oracle, variance="beta").std()) > S + 10 * S / math.sqrt(2 * n)


@pytest.mark.parametrize("v_raw, fixed", [(1.0, "beta"), (-1.0, "beta_tilde")])
def test_ddpm_learned_variance_endpoints_are_the_fixed_variances(v_raw, fixed):
    sched = schedules.get("cosine", 1000)
    oracle = GaussianOracle(sched, discretize(sched, 8, "leading"), v_raw=v_raw)
    torch.testing.assert_close(_ddpm(oracle, n=2000), _ddpm(oracle, n=2000, variance=fixed), rtol=1e-9, atol=1e-9)


def test_ddpm_learned_variance_needs_a_variance():
    sched = schedules.get("linear", 1000)
    with pytest.raises(DifflabError, match="needs a denoiser with a learned variance"):
        difflab.sample(ModelDenoiser(EpsNet(False), sched), (4, 2), sampler="ddpm", steps=5, variance="learned")
    with pytest.raises(DifflabError, match="unknown DDPM variance"):
        difflab.sample(ModelDenoiser(EpsNet(False), sched), (4, 2), sampler="ddpm", steps=5, variance="large")


def test_a_trained_learned_variance_run_samples_with_every_sampler(hybrid_run):
    run = difflab.load(hybrid_run)
    assert run.denoiser.learned_variance
    seen = []
    x = run.sample(4, sampler="ddpm", steps=5, generator=torch.Generator().manual_seed(0),
                   callback=lambda i, t, x, pred: seen.append(pred.v_raw is not None))
    assert all(seen) and len(seen) == 5
    assert torch.equal(x, run.sample(4, sampler="ddpm", steps=5, generator=torch.Generator().manual_seed(0),
                                     variance="learned"))
    for sampler in ("ddim", "euler", "dpm_solver"):
        y = run.sample(4, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(0))
        assert y.shape == (4, 1, 8, 8) and torch.isfinite(y).all()


# --------------------------------------------------------------------------- likelihood

def test_cli_vlb_likelihood_writes_terms_that_add_up(hybrid_run, tmp_path, capsys):
    out = tmp_path / "bound.json"
    code = main(["likelihood", str(hybrid_run), "--method", "vlb", "--num", "12", "--batch-size", "8", "--seed", "3",
                 "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["method"] == "vlb" and res["unit"] == "bits/dim" and res["num"] == 12 and res["variance"] == "learned"
    assert len(res["terms_bpd"]) == T and res["decoder_bpd"] == res["terms_bpd"][0]
    assert res["total_bpd"] == pytest.approx(res["prior_bpd"] + sum(res["terms_bpd"]), rel=1e-12)
    assert res["mean"] == res["total_bpd"] and res["stderr"] > 0
    assert (tmp_path / "bound.png").stat().st_size > 0 and res["plot"] == str(tmp_path / "bound.png")
    assert "±" in stdout and "L_T" in stdout and "L_0" in stdout
    # the same numbers from the bound computed directly on the same test images and noise
    run = difflab.load(hybrid_run)
    images = load_dataset("digits", num=12, split="test", seed=run.config["seed"]).data[:12]
    gen = torch.Generator().manual_seed(3)
    z = run.normalization.to_model(images)
    direct = torch.cat([full_bound(run.schedule, z[lo:lo + 8], model_predictor(run.model, run.schedule), generator=gen,
                                   clip_x0=(-1.0, 1.0))["total_bpd"] for lo in (0, 8)])
    assert res["total_bpd"] == pytest.approx(float(direct.mean()), rel=1e-12)


def test_cli_vlb_likelihood_of_a_fixed_variance_run(tmp_path, capsys):
    run = _train(tiny("simple", steps=2), tmp_path / "fixed")
    code = main(["likelihood", str(run), "--method", "vlb", "--num", "4"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "fixed β̃ (small) variance" in stdout and (run / "vlb_terms.png").stat().st_size > 0


def test_cli_vlb_likelihood_refuses_toys(tiny_toy_config, tmp_path, capsys):
    run = train(resolve(str(tiny_toy_config)), tmp_path / "toy", steps=1, progress=False, log=lambda *_: None)
    assert main(["likelihood", str(run), "--method", "vlb", "--num", "4", "--out", str(tmp_path / "b.json")]) == 2
    assert "defined for 8-bit images" in capsys.readouterr().err and not (tmp_path / "b.json").exists()
    assert main(["likelihood", str(run), "--method", "elbo"]) == 2
    assert "expected 'ode' (probability-flow ODE) or 'vlb'" in capsys.readouterr().err
