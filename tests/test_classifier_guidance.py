"""Classifier guidance (Dhariwal & Nichol 2021, Sec. 4, Algorithms 1 and 2): the noise-aware classifier,
its training command, the guided denoisers against float64 recomputation and finite differences, the
exact Gaussian-mixture classifier steering samples to one component, and every refusal."""

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from difflab import process, schedules
from difflab.cli.main import main
from difflab.denoiser import ModelDenoiser, Prediction
from difflab.errors import DifflabError
from difflab.guidance import AncestralClassifierGuidance, ClassifierGuidance, conditional_denoiser
from difflab.models.classifier import build_classifier
from difflab.samplers import sample
from difflab.samplers.ddpm import ddpm
from difflab.toy import GaussianMixture
from difflab.saved import load_classifier
from difflab.training.classifier import resolve

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [4], "groups": 4, "num_heads": 2, "num_classes": 5}


def _classifier(dtype=torch.float64, seed=0, **over):
    """A tiny classifier with every weight random (the zero-initialised ones too, so it depends on t)."""
    torch.manual_seed(seed)
    net = build_classifier({**TINY, **over}).to(dtype).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


class _FixedDenoiser:
    """A stand-in denoiser: ε̂ = tanh(x_t) (x̂_0 by the schedule), so guidance has something to shift."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, x_t, t):
        t = torch.as_tensor(t)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        eps = torch.tanh(x_t)
        return Prediction(eps=eps, x0=process.eps_to_x0(self.schedule, x_t, t, eps))


def _log_p(net, schedule, x, t, y):
    """log p_φ(y | x_t) per example, recomputed here from the network's inputs."""
    tt = torch.full((x.shape[0],), t, dtype=torch.float64 if isinstance(t, float) else torch.long)
    x_in = x * schedule.input_scale(tt).to(x).reshape(-1, 1, 1, 1)
    logits = net(x_in, schedule.model_time(tt))
    return torch.log_softmax(logits, -1)[torch.arange(x.shape[0]), y]


def test_classifier_shape_depends_on_t_and_refuses_other_sizes():
    net = _classifier(torch.float32)
    x = torch.randn(3, 1, 8, 8)
    a, b = net(x, torch.tensor([10.0, 10.0, 10.0])), net(x, torch.tensor([500.0, 500.0, 500.0]))
    assert a.shape == (3, 5) and torch.isfinite(a).all()
    assert (a - b).abs().max() > 1e-3
    # each example's logits depend on that example alone (GroupNorm and attention are per example)
    torch.testing.assert_close(net(x[:1], torch.tensor([10.0])), a[:1], rtol=1e-5, atol=1e-5)
    assert net.image_size == 8 and net.in_channels == 1 and net.num_classes == 5
    with pytest.raises(DifflabError, match="shape"):
        net(torch.randn(2, 1, 16, 16), 3.0)
    with pytest.raises(DifflabError, match="channel_mult"):
        build_classifier({**TINY, "channel_mult": []})
    with pytest.raises(DifflabError, match="not an option"):
        build_classifier({**TINY, "widht": 3})
    with pytest.raises(DifflabError, match="num_classes"):
        build_classifier({k: v for k, v in TINY.items() if k != "num_classes"})


@pytest.mark.parametrize("name", ["cosine", "ve"])
def test_guidance_gradient_matches_finite_differences(name):
    schedule = schedules.get(name, 100) if name != "ve" else schedules.get("ve", sigma_min=0.01, sigma_max=5.0)
    t = 37 if schedule.discrete else 0.3
    net = _classifier()
    y = torch.tensor([1, 4])
    guide = ClassifierGuidance(_FixedDenoiser(schedule), net, [y], 2.0)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad = guide.grad_log_prob(x, t)
    h = 1e-6
    fd = torch.zeros_like(x)
    flat, out = x.reshape(2, -1), fd.reshape(2, -1)
    with torch.no_grad():
        for j in range(flat.shape[1]):
            plus, minus = flat.clone(), flat.clone()
            plus[:, j] += h
            minus[:, j] -= h
            out[:, j] = (_log_p(net, schedule, plus.reshape(x.shape), t, y)
                         - _log_p(net, schedule, minus.reshape(x.shape), t, y)) / (2 * h)
    assert fd.abs().max() > 1e-3  # the test has teeth
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-7)


def test_guided_eps_and_x0_are_algorithm_2():
    schedule = schedules.get("linear", 200)
    net = _classifier()
    base = _FixedDenoiser(schedule)
    y, s, t = torch.tensor([0, 3, 2]), 7.5, 120
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # as inside a sampler
        pred = ClassifierGuidance(base, net, [y], s)(x, t)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_p(net, schedule, xg, t, y).sum(), xg)
    sigma = math.sqrt(1.0 - float(schedule.alpha_bar[t]))
    alpha = math.sqrt(float(schedule.alpha_bar[t]))
    eps = torch.tanh(x) - s * sigma * grad
    torch.testing.assert_close(pred.eps, eps, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred.x0, (x - sigma * eps) / alpha, rtol=1e-10, atol=1e-12)
    # two labels per sample (compose): the gradients of both log-probabilities add up
    both = ClassifierGuidance(base, net, [y, torch.tensor([1, 1, 4])], s)
    one = ClassifierGuidance(base, net, [torch.tensor([1, 1, 4])], s)
    torch.testing.assert_close(both.grad_log_prob(x, t), grad + one.grad_log_prob(x, t))
    # scale 0 is the base denoiser
    torch.testing.assert_close(ClassifierGuidance(base, net, [y], 0.0)(x, t).eps, torch.tanh(x))


def test_ancestral_mean_shift_is_algorithm_1_and_ddpm_applies_it():
    schedule = schedules.get("linear", 200)
    net = _classifier()
    base = _FixedDenoiser(schedule)
    y, s = torch.tensor([2, 0]), 3.0
    guide = AncestralClassifierGuidance(base, net, [y], s)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    var = torch.full_like(x, 0.0123)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_p(net, schedule, xg, 150, y).sum(), xg)
    torch.testing.assert_close(guide.mean_shift(x, 150, var), s * 0.0123 * grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(guide(x, 150).eps, torch.tanh(x))  # predictions are left alone

    # one ddpm run 150 -> 60 -> 0 against the steps written out: μ̃ + s β̃ ∇ + √β̃ z, then μ̃ (no noise, no shift)
    with torch.no_grad():
        got = ddpm(guide, x, [150, 60], generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    b = x.shape[0]
    p1 = base(x, 150)
    mean, var1 = process.q_posterior_between(schedule, p1.x0, x, torch.full((b,), 150), torch.full((b,), 60))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_p(net, schedule, xg, 150, y).sum(), xg)
    x1 = mean + s * var1 * grad + var1.sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
    p2 = base(x1, 60)
    want, _ = process.q_posterior_between(schedule, p2.x0, x1, torch.full((b,), 60), torch.full((b,), 0))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


class _ExactMixtureClassifier(torch.nn.Module):
    """p(k | x_t) of a Gaussian mixture at the noise level of the time it is given (Bayes' rule over the
    noised components w_k N(α_t μ_k, (α_t² s_k² + σ_t²) I)); for VP schedules the input is x_t itself."""

    def __init__(self, mixture: GaussianMixture, schedule):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule
        self.num_classes = mixture.means.shape[0]

    def forward(self, x, time):
        t = time.to(torch.float64)
        a, s = self.schedule.alpha(t)[:, None], self.schedule.sigma(t)[:, None]
        var = a**2 * self.mixture.stds**2 + s**2                                       # (B, K)
        sq = (x.to(torch.float64)[:, None, :] - a[:, :, None] * self.mixture.means).pow(2).sum(-1)
        return (torch.log(self.mixture.weights) - 0.5 * self.mixture.dim * torch.log(var) - 0.5 * sq / var).to(x.dtype)


def test_ancestral_guidance_is_refused_where_it_would_be_ignored():
    """Algorithm 1 guidance lives in the ddpm step; any other sampler, or a wrapper hiding it, would drop it."""
    from difflab.tasks.measurement import Replacement

    mixture = GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], 0.3)
    schedule = schedules.get("linear", 100)
    clf = _ExactMixtureClassifier(mixture, schedule)
    guide = conditional_denoiser(mixture.denoiser(schedule), 4, [1], "classifier", 1.0, classifier=clf, ancestral=True)
    x_T = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sampler in ("ddim", "dpmpp_2m", "euler"):
        with pytest.raises(DifflabError, match=r"ancestral form \(Algorithm 1\) would be ignored by the"):
            sample(guide, (4, 2), sampler=sampler, steps=10, x_T=x_T)
    hidden = Replacement(guide, lambda x: x * 0, torch.zeros(4, 2))
    with pytest.raises(DifflabError, match="inside another denoiser"):
        sample(hidden, (4, 2), sampler="ddpm", steps=10, x_T=x_T)
    assert sample(guide, (4, 2), sampler="ddpm", steps=10, x_T=x_T).shape == (4, 2)  # the sampler that applies it
    # the ε̂ form (Algorithm 2) runs anywhere
    eps_form = conditional_denoiser(mixture.denoiser(schedule), 4, [1], "classifier", 1.0, classifier=clf)
    assert sample(eps_form, (4, 2), sampler="dpmpp_2m", steps=10, x_T=x_T).shape == (4, 2)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_exact_classifier_guidance_samples_the_requested_component(sampler):
    mixture = GaussianMixture([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]], 0.3)
    schedule = schedules.get("linear", 1000)
    clf = _ExactMixtureClassifier(mixture, schedule)
    n, k = 400, 2
    den = conditional_denoiser(mixture.denoiser(schedule), n, [k], "classifier", 1.0, classifier=clf,
                               ancestral=sampler == "ddpm")
    assert isinstance(den, AncestralClassifierGuidance if sampler == "ddpm" else ClassifierGuidance)
    x = sample(den, (n, 2), sampler=sampler, steps=50, generator=torch.Generator().manual_seed(0),
               x_T=torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    nearest = torch.cdist(x, mixture.means).argmin(1)
    assert (nearest == k).double().mean() > 0.9
    # unguided, the same noise spreads over all four components
    free = sample(mixture.denoiser(schedule), (n, 2), sampler=sampler, steps=50, generator=torch.Generator().manual_seed(0),
                  x_T=torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert (torch.cdist(free, mixture.means).argmin(1) == k).double().mean() < 0.4


def test_conditional_denoiser_refusals():
    schedule = schedules.get("linear", 100)
    net = _classifier(torch.float32)
    base = _FixedDenoiser(schedule)
    with pytest.raises(DifflabError, match="needs a noise-aware classifier"):
        conditional_denoiser(base, 4, [1], "classifier", 2.0)
    with pytest.raises(DifflabError, match="guidance is not 'classifier'"):
        conditional_denoiser(base, 4, [1], "cfg", 2.0, classifier=net)
    with pytest.raises(DifflabError, match="guidance is not 'classifier'"):
        conditional_denoiser(base, 4, [1], None, 0.0, classifier=net)
    with pytest.raises(DifflabError, match="class 5 is out of range: the classifier knows classes 0..4"):
        conditional_denoiser(base, 4, [5], "classifier", 2.0, classifier=net)
    with pytest.raises(DifflabError, match="needs the class"):
        conditional_denoiser(base, 4, None, "classifier", 2.0, classifier=net)

    class Conditional(torch.nn.Module):
        num_classes = 10

        def forward(self, x, t, y=None):
            return torch.zeros_like(x)

    with pytest.raises(DifflabError, match="predicts 5 classes but the class-conditional model knows 10"):
        conditional_denoiser(ModelDenoiser(Conditional(), schedule), 4, [1], "classifier", 2.0, classifier=net)
    # a class-conditional model gets the labels too
    den = conditional_denoiser(ModelDenoiser(Conditional(), schedule), 4, [1], "classifier", 2.0,
                               classifier=_classifier(torch.float32, num_classes=10))
    assert den.inner.labels.tolist() == [1, 1, 1, 1]
    with pytest.raises(DifflabError, match="unconditional"):  # cfg on an unconditional model
        conditional_denoiser(ModelDenoiser(torch.nn.Identity(), schedule), 4, [1], "cfg", 2.0)


def test_presets_resolve():
    for name in ("digits-classifier", "mnist-classifier", "fashion-mnist-classifier"):
        cfg = resolve(name)
        assert cfg["model"]["type"] == "classifier" and cfg["model"]["num_classes"] == 10
        assert 16 <= cfg["model"]["base_channels"] <= 32
    from difflab.config import PRESETS
    assert resolve("mnist-classifier")["diffusion"]["schedule"] == PRESETS["mnist"]["diffusion"]["schedule"]
    with pytest.raises(DifflabError, match="its classifier is digits-classifier"):
        resolve("digits")
    with pytest.raises(DifflabError, match="train.eval_num"):
        resolve({"preset": "digits-classifier", "train": {"eval_num": 0}})
    with pytest.raises(DifflabError, match="'train.label_dropout'"):
        resolve({"preset": "digits-classifier", "train": {"label_dropout": 0.1}})


TINY_CLASSIFIER = """
preset: digits-classifier
model: {base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [4], groups: 4}
diffusion: {T: 100}
train: {steps: 6, batch_size: 16, log_every: 2, save_every: 3, warmup: 2, eval_num: 16}
data: {num: 64}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny classifier trained through the CLI, and a tiny unconditional digits model on the same schedule."""
    from conftest import TINY_DIGITS

    root = tmp_path_factory.mktemp("clf")
    (root / "c.yaml").write_text(TINY_CLASSIFIER)
    (root / "d.yaml").write_text(TINY_DIGITS)
    assert main(["train-classifier", str(root / "c.yaml"), "--out", str(root / "clf"), "--no-progress", "--device", "cpu"]) == 0
    assert main(["train", str(root / "d.yaml"), "--out", str(root / "run"), "--steps", "2", "--no-progress"]) == 0
    return root


def test_train_classifier_writes_its_run_and_resumes_exactly(runs, capsys):
    clf = runs / "clf"
    config = json.loads((clf / "config.json").read_text())
    assert config["model"]["type"] == "classifier"
    assert config["diffusion"] == {"schedule": "cosine", "T": 100, "schedule_params": {}}
    assert "normalization" not in config  # the config as asked for; what training measured is beside it
    record = json.loads((clf / "record.json").read_text())
    assert record["normalization"]["kind"] == "image" and record["normalization"]["scale"] == 0.5
    assert "model" not in record  # model.num_classes was given, so nothing was read off the data
    rows = (clf / "log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,accuracy,lr,grad_norm,seconds" and [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]
    ev = json.loads((clf / "eval.json").read_text())
    assert [r["t"] for r in ev["accuracy"]] == [0, 25, 50] and ev["num"] == 16
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in ev["accuracy"])
    assert sorted(p.name for p in clf.glob("ckpt-*")) == ["ckpt-00000003", "ckpt-00000006"]

    # 3 steps, then --resume to 6: the same weights, optimizer and EMA as the uninterrupted run
    part = runs / "part"
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(part), "--steps", "3", "--no-progress"]) == 0
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(part), "--resume", "--steps", "6", "--no-progress"]) == 0
    for name in ("model", "ema", "trainer"):
        a = load_file(str(clf / "ckpt-00000006" / f"{name}.safetensors"))
        b = load_file(str(part / "ckpt-00000006" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (part / "log.csv").read_text().splitlines()[1:] != []
    # --max-minutes: a limit already passed stops after one step with a checkpoint; --resume ends where the
    # uninterrupted run does
    timed = runs / "timed"
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(timed), "--max-minutes", "1e-9", "--no-progress"]) == 0
    assert "stopped" in capsys.readouterr().out and [p.name for p in timed.glob("ckpt-*")] == ["ckpt-00000001"]
    assert not (timed / "eval.json").exists()
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(timed), "--resume", "--no-progress"]) == 0
    for name in ("model", "ema"):
        a = load_file(str(clf / "ckpt-00000006" / f"{name}.safetensors"))
        b = load_file(str(timed / "ckpt-00000006" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    capsys.readouterr()
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(runs / "t0"), "--max-minutes", "0"]) == 2
    assert "--max-minutes must be a positive number, got 0.0" in capsys.readouterr().err
    loaded = load_classifier(clf)
    assert loaded.step == 6 and loaded.num_classes == 10 and loaded.shape == (1, 8, 8)
    capsys.readouterr()
    assert main(["train-classifier", str(runs / "c.yaml"), "--out", str(clf), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_cli_samples_with_classifier_guidance(runs, sampler, capsys):
    import numpy as np

    out = runs / f"g_{sampler}.npz"
    assert main(["sample", str(runs / "run"), "--class", "3", "--guidance", "classifier", "--classifier", str(runs / "clf"),
                 "--scale", "10", "--sampler", sampler, "--num", "3", "--steps", "4", "--no-progress", "--out", str(out)]) == 0
    x = np.load(out)["samples"]
    assert x.shape == (3, 1, 8, 8) and np.isfinite(x).all()


def test_cli_classifier_guidance_refusals(runs, capsys):
    args = ["sample", str(runs / "run"), "--num", "2", "--steps", "2", "--no-progress", "--out", str(runs / "bad.npz")]
    clf = str(runs / "clf")
    for extra, message in [
        (["--class", "3", "--guidance", "classifier"], "--guidance classifier needs --classifier DIR"),
        (["--class", "3", "--classifier", clf], "--classifier needs --guidance classifier"),
        (["--class", "3", "--guidance", "cfg", "--classifier", clf], "--classifier needs --guidance classifier"),
        (["--class", "3", "--guidance", "cfg"], "unconditional"),
        (["--class", "3"], "unconditional"),
        (["--class", "10", "--guidance", "classifier", "--classifier", clf], "class 10 is out of range: the classifier"),
        (["--guidance", "classifier", "--classifier", clf], "needs the class"),
        (["--class", "3", "--guidance", "classifier", "--classifier", str(runs / "run")], "is a diffusion run, not a classifier"),
        (["--class", "3", "--guidance", "classifier", "--classifier", str(runs / "nowhere")], "does not exist"),
        (["--scale", "2"], "--scale needs --guidance cfg or --guidance classifier"),
    ]:
        assert main(args + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert not (runs / "bad.npz").exists()


def test_classifier_that_does_not_fit_the_model_is_refused(runs):
    from difflab.run import load

    run, clf = load(runs / "run"), load_classifier(runs / "clf")
    for key, value, message in [("T", 50, "another diffusion schedule"), ("schedule", "linear", "another diffusion schedule"),
                                ("image_size", 16, "trained on 1x16x16 images but the model makes samples of shape 1x8x8"),
                                ("in_channels", 3, "trained on 3x8x8 images")]:
        other = copy.deepcopy(clf)
        section = "diffusion" if key in ("T", "schedule") else "model"
        other.config[section][key] = value
        with pytest.raises(DifflabError, match=message):
            run.sample(2, steps=2, classes=3, guidance="classifier", scale=1.0, classifier=other)
    other = copy.deepcopy(clf)
    other.config["normalization"]["scale"] = 1.0
    with pytest.raises(DifflabError, match=r"expects images scaled to \[-1, 1\]"):
        run.sample(2, steps=2, classes=3, guidance="classifier", scale=1.0, classifier=other)
    # and the one that fits works through the Python API, with a path too
    x = run.sample(2, steps=2, classes=[3, 5], guidance="classifier", scale=5.0, classifier=runs / "clf",
                   generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 8, 8)


def test_guided_x0_is_clipped_when_the_model_clips():
    """x̂_0 from the guided ε̂' is clamped (and ε̂' recomputed) for a model sampled with clipping;
    without clipping it is exactly (x_t − σ_t ε̂')/α_t."""
    from difflab import process, schedules
    from difflab.denoiser import ModelDenoiser
    from difflab.guidance import ClassifierGuidance

    schedule = schedules.get("cosine", 100)

    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    class Linear(torch.nn.Module):
        num_classes = 2

        def forward(self, x, t):
            f = x.flatten(1).sum(1, keepdim=True)
            return torch.cat([f, -f], dim=1)

    x = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((4,), 95)
    for clip in (None, (-1.0, 1.0)):
        guided = ClassifierGuidance(ModelDenoiser(Zero(), schedule, "eps", clip_x0=clip), Linear(), [0], 10.0)
        pred = guided(x, t)
        if clip is None:
            assert torch.allclose(pred.x0, process.eps_to_x0(schedule, x, t, pred.eps), atol=1e-10)
            assert pred.x0.abs().max() > 1.0  # the shift, divided by a small α_t, leaves the data range
        else:
            assert pred.x0.abs().max() <= 1.0
            assert torch.allclose(pred.eps, process.x0_to_eps(schedule, x, t, pred.x0), atol=1e-10)
