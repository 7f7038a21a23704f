"""Progressive distillation against exact answers: for Gaussian data the probability-flow ODE map is affine and
known in closed form; a student distilled from the exact oracle's two DDIM steps matches it; the rounds run as
ordinary runs; and the refusals."""

import math

import numpy as np
import pytest
import torch

from difflab import schedules
from difflab.config import resolve
from difflab.data import Dataset
from difflab.data.normalization import Normalization
from difflab.distillation import teacher_times, two_step_target
from difflab.errors import DifflabError
from difflab.samplers import sample, spaced_timesteps
from difflab.toy import GaussianMixture
from difflab.training.distill import ProgressiveTrainable, check_steps, distill, round_config
from difflab.training.loop import LoopOptions, fit

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"progress": False, "log": lambda *a: None}
MEAN, STD = torch.tensor([1.0, -0.5]), 0.5


def gaussian_data(n=20_000):
    return (MEAN + STD * torch.randn(n, 2, generator=torch.Generator().manual_seed(0))).float()


class GaussianStudent(ProgressiveTrainable):
    def dataset(self):
        return Dataset("gaussian", "toy", gaussian_data(), None)


def exact_ode_map(schedule, x_T, mean, std):
    """The PF-ODE map from t = T of N(mean, std² I) data: (x_t − α_t μ)/√(α_t² s² + σ_t²) is constant along it."""
    a = float(schedule.alpha(torch.tensor(schedule.T)))
    s = float(schedule.sigma(torch.tensor(schedule.T)))
    return mean + std * (x_T - a * mean) / math.sqrt(a**2 * std**2 + s**2)


def test_teacher_times_put_the_student_grid_at_even_positions():
    for n in (1, 2, 4, 8, 16):
        times = teacher_times(1000, n)
        assert len(times) == 2 * n + 1 and int(times[-1]) == 0
        assert torch.equal(times[0:-1:2], spaced_timesteps(1000, n, "trailing"))


def test_the_two_step_target_makes_one_student_step_land_on_two_teacher_steps():
    """If the student predicts x̃, its DDIM step t → t'' equals the teacher's two steps (Algorithm 2's identity),
    checked with the exact oracle on a cosine schedule at every student step of a 4-step grid."""
    sch = schedules.get("cosine", 1000)
    oracle = GaussianMixture(MEAN[None].double(), STD).denoiser(sch)
    times = teacher_times(1000, 4)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in range(4):
        t, tm, tn = (times[2 * k + j].expand(64) for j in range(3))
        x_tilde = two_step_target(sch, oracle, z, t, tm, tn)
        a_t, s_t = float(sch.alpha(t[0])), float(sch.sigma(t[0]))
        a_n, s_n = float(sch.alpha(tn[0])), float(sch.sigma(tn[0]))
        one_step = a_n * x_tilde + s_n * (z - a_t * x_tilde) / s_t
        pred = oracle(z, t)
        z_mid = float(sch.alpha(tm[0])) * pred.x0 + float(sch.sigma(tm[0])) * pred.eps
        pred = oracle(z_mid, tm)
        two_steps = a_n * pred.x0 + s_n * pred.eps
        torch.testing.assert_close(one_step, two_steps)


def test_a_student_distilled_from_the_exact_teacher_matches_the_affine_ode_map(tmp_path):
    """The teacher is the exact Gaussian denoiser (in the run's standardised coordinates) at 8 DDIM steps; the MLP
    student (v-prediction) learns 4 steps in 800 training steps. From 2,000 draws of x_T its 4-step DDIM map equals
    the teacher's 8-step map within 0.01 RMS (model units), and so lies nearer the closed-form probability-flow map
    than 4 DDIM steps of the exact teacher do."""
    cfg = resolve({"preset": "8gaussians", "diffusion": {"schedule": "cosine", "parameterization": "eps"},
                   "train": {"steps": 800, "batch_size": 256, "lr": 1e-3, "warmup": 50, "save_every": 800,
                             "log_every": 200, "sample_every": 0, "ema_decay": 0.99}})
    cfg = round_config(cfg, None, 4, {}, "v")
    norm = Normalization.fit("toy", gaussian_data())
    mean = (MEAN.double() - torch.tensor(norm.shift)) / norm.scale
    std = STD / norm.scale
    sch = schedules.get("cosine", 1000)
    oracle = GaussianMixture(mean[None], std).denoiser(sch)
    fit(GaussianStudent(cfg, teacher=oracle), tmp_path / "s", LoopOptions.from_section(cfg["train"]), 0, **QUIET)
    from difflab.run import load

    run = load(tmp_path / "s")
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(5))
    student = sample(run.denoiser, x_T.shape, sampler="ddim", steps=4, x_T=x_T).double()
    exact = exact_ode_map(sch, x_T.double(), mean, std)
    teacher4 = sample(oracle, x_T.shape, sampler="ddim", steps=4, x_T=x_T.double())
    teacher8 = sample(oracle, x_T.shape, sampler="ddim", steps=8, x_T=x_T.double())
    rms = lambda a, b=exact: float((a - b).pow(2).sum(1).mean().sqrt())  # noqa: E731
    assert rms(student, teacher8) < 0.01  # measured 4e-4
    assert rms(teacher4) > 1.5 * rms(student)  # measured 0.372 vs 0.197 (the 8-step teacher's own error: 0.197)


LEVELS = (0.3, 0.7)  # the two classes' pixel values (data units) of the conditional test's 8x8 images, noise 0.05


class TwoClassOracle(torch.nn.Module):
    """A class-conditional "network" whose ε is the exact ε* of class y's Gaussian on 8x8 images (model units), and
    of the two classes' mixture for the null label y = 2."""

    def __init__(self, schedule):
        super().__init__()
        means = torch.stack([torch.full((64,), 2 * v - 1, dtype=torch.float64) for v in LEVELS])
        self.parts = [GaussianMixture(means[k:k + 1], 0.1).denoiser(schedule) for k in range(2)]
        self.whole = GaussianMixture(means, 0.1).denoiser(schedule)

    def forward(self, x, t, y):
        out = torch.empty_like(x)
        for k, oracle in enumerate([*self.parts, self.whole]):
            rows = y == k
            if rows.any():
                out[rows] = oracle(x[rows].flatten(1).double(), t[rows]).eps.reshape(x[rows].shape).to(x.dtype)
        return out


class TwoClassStudent(ProgressiveTrainable):
    def dataset(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(2000) % 2
        data = torch.tensor(LEVELS)[labels].reshape(-1, 1, 1, 1) + 0.05 * torch.randn(2000, 1, 8, 8, generator=g)
        return Dataset("two-levels", "image", data.float(), labels)


def test_a_class_conditional_teacher_is_distilled_class_by_class(tmp_path):
    """The teacher is the exact class-conditional denoiser of two Gaussian classes of 8x8 images (flat at 0.3 and
    0.7); a small conditional U-Net student learns its 4 DDIM steps in 2. Asked for class k, the student's 2-step
    samples land on class k (mean pixel within 0.03 of its level, all 200 on the right side of 0.5), which they could
    not if the labels missed the teacher's steps or the student's (the targets would be the mixture's); with the null
    label kept by label dropout it draws both classes."""
    from difflab.denoiser import ModelDenoiser
    from difflab.run import load

    cfg = resolve({"preset": "digits", "model": {"base_channels": 16, "groups": 8, "num_classes": 2,
                                                 "attention_resolutions": []},
                   "train": {"steps": 300, "batch_size": 64, "lr": 2e-3, "warmup": 20, "save_every": 300,
                             "log_every": 100, "sample_every": 0, "ema_decay": 0.9, "label_dropout": 0.2}})
    cfg = round_config(cfg, None, 2, {}, "v")
    sch = schedules.get("cosine", 1000)
    teacher = ModelDenoiser(TwoClassOracle(sch), sch, "eps")
    fit(TwoClassStudent(cfg, teacher=teacher), tmp_path / "s", LoopOptions.from_section(cfg["train"]), 0, **QUIET)
    run = load(tmp_path / "s")
    g = torch.Generator().manual_seed(3)
    for k, level in enumerate(LEVELS):
        means = run.sample(200, classes=[k], steps=2, generator=g).flatten(1).mean(1)
        assert abs(float(means.mean()) - level) < 0.03, (k, float(means.mean()))
        assert bool(((means > 0.5) == (k == 1)).all()), (k, means.min(), means.max())
    means = run.sample(400, steps=2, generator=g).flatten(1).mean(1)  # the null label: the mixture
    assert 0.25 < float((means > 0.5).double().mean()) < 0.75


def test_rounds_run_as_ordinary_runs_and_refuse_bad_step_counts(train_toy, tmp_path):
    teacher = train_toy("8gaussians", 100)
    last = distill(teacher, tmp_path / "pd", to=2, from_steps=8, steps=20, **QUIET)
    assert last == tmp_path / "pd" / "round-2"
    from difflab.run import load

    run = load(last)
    assert run.config["sample"]["steps"] == 2 and run.config["diffusion"]["parameterization"] == "v"
    assert run.config["distill"]["teacher"] == str(tmp_path / "pd" / "round-4")
    assert run.sample(10, generator=torch.Generator().manual_seed(0)).shape == (10, 2)
    again = distill(teacher, tmp_path / "pd", to=2, from_steps=8, steps=20, resume=True, **QUIET)  # all done: kept
    assert again == last
    with pytest.raises(DifflabError, match="already holds files"):
        distill(teacher, tmp_path / "pd", to=2, from_steps=8, steps=20, **QUIET)
    with pytest.raises(DifflabError, match="must be the teacher's 50 steps halved one or more times"):
        distill(teacher, tmp_path / "x", to=4, **QUIET)  # the preset samples with 50 steps: 4 is no halving of it
    assert not (tmp_path / "x").exists()


def test_an_exported_model_is_a_teacher_like_its_run(train_toy, tmp_path):
    """A teacher given as an exported model directory (what a shipped model is) distils to the same student, bit for
    bit, as its run directory: the same EMA weights and normalisation are read."""
    from difflab import pretrained
    from difflab.run import load

    teacher = train_toy("8gaussians", 60)
    exported = pretrained.export(teacher, tmp_path / "exported")
    a = distill(teacher, tmp_path / "a", to=2, from_steps=4, steps=10, **QUIET)
    b = distill(exported, tmp_path / "b", to=2, from_steps=4, steps=10, **QUIET)
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load(a).sample(50, x_T=x_T), load(b).sample(50, x_T=x_T))


@pytest.mark.parametrize("frm,to,ok", [(64, 4, [32, 16, 8, 4]), (8, 8, None), (8, 3, None), (12, 5, None), (12, 3, [6, 3]), (24, 4, None),
                                       (8, 1, [4, 2, 1])])
def test_check_steps(frm, to, ok):
    if ok is None:
        with pytest.raises(DifflabError, match="power-of-two fraction"):
            check_steps(frm, to)
    else:
        assert check_steps(frm, to) == ok


def test_cli_distills_and_samples(train_toy, tmp_path, capsys):
    from difflab.cli.main import main

    teacher = train_toy("8gaussians", 60)
    out = tmp_path / "pd"
    assert main(["distill", str(teacher), "--to", "2", "--from", "4", "--out", str(out), "--steps", "10",
                 "--no-progress"]) in (0, None)
    assert "distilled into" in capsys.readouterr().out
    npz = tmp_path / "s.npz"
    assert main(["sample", str(out / "round-2"), "--num", "20", "--out", str(npz), "--no-progress"]) in (0, None)
    assert np.load(npz)["samples"].shape == (20, 2)
    stopped = ["distill", str(teacher), "--to", "2", "--from", "8", "--out", str(tmp_path / "part"), "--steps", "5000",
               "--max-minutes", "0.002", "--no-progress"]
    assert main(stopped) in (0, None)  # a time limit inside the first round: said so, not "distilled"
    assert "stopped at --max-minutes in" in capsys.readouterr().out
    assert main(["distill", str(teacher), "--to", "3", "--from", "8", "--out", str(tmp_path / "bad")]) == 2
    assert "power-of-two fraction" in capsys.readouterr().err
    flow = train_toy("8gaussians-flow", 10, name="flow")
    assert main(["distill", str(flow), "--to", "2", "--from", "8", "--out", str(tmp_path / "f")]) == 2
    assert "continuous schedule 'flow'" in capsys.readouterr().err


def test_shipped_mnist_fast_draws_the_class_asked_with_its_recorded_two_steps(tmp_path, capsys):
    """The shipped `mnist-fast`: the plain `difflab sample mnist-fast` takes the 2 DDIM steps recorded with it, and
    its class-conditional draws are, as the independent MNIST judge reads them, the digits asked for (the benchmark
    measures 96.5% on 10,000; a student that ignored its labels would score about 10%)."""
    from difflab.cli.main import main
    from difflab.metrics.classifiers import judge
    from difflab.run import load

    run = load("mnist-fast")
    assert run.config["sample"]["sampler"] == "ddim" and run.config["sample"]["steps"] == 2
    assert run.config["distill"]["method"] == "progressive" and run.config["diffusion"]["parameterization"] == "v"
    out = tmp_path / "x.npz"
    assert main(["sample", "mnist-fast", "--classes", "0,1,2,3,4,5,6,7,8,9", "--num", "100", "--out", str(out),
                 "--no-progress"]) == 0
    assert "(ddim, 2 steps)" in capsys.readouterr().out
    x = torch.from_numpy(np.load(out)["samples"])
    assert x.shape == (100, 1, 28, 28)
    pred, _ = judge(x, "mnist")
    accuracy = float((pred == torch.arange(100) % 10).double().mean())
    assert accuracy >= 0.85, accuracy
