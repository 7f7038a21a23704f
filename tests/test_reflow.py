"""Reflow (Liu et al. 2023): the straightness metric against its closed form for Gaussian data, and a toy flow
model reflowed into one whose paths are straight enough for one Euler step, resumed on the same pairs."""

from __future__ import annotations


import pytest
import torch

from difflab import schedules
from difflab.errors import DifflabError
from difflab.metrics.straightness import straightness
from difflab.toy import GaussianMixture


def test_straightness_of_the_exact_gaussian_flow_is_its_closed_form():
    """Data N(m, s² I), the flow-matching ODE from N(0, I): the exact path from noise ξ is z(t) = (1 − t) m + g(t) ξ
    with g(t) = √((1 − t)² s² + t²) (the marginal's standard deviation), so on [0, t_max]
    S = (1/t_max) ∫ (c − g'(t))² dt E‖ξ‖²/D with c = (g(t_max) − s)/t_max, integrated here by Simpson's rule."""
    flow = schedules.get("flow")
    m, s, dim = 0.7, 0.3, 4
    mix = GaussianMixture([[m] * dim], [s], [1.0])
    x_T = torch.randn(20000, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * flow.t_max
    got, x0 = straightness(mix.denoiser(flow), x_T, steps=400)
    t_max = flow.t_max
    t = torch.linspace(0, t_max, 20001, dtype=torch.float64)
    g = lambda u: torch.sqrt((1 - u) ** 2 * s**2 + u**2)  # noqa: E731
    dg = ((1 - t) * -(s**2) + t) / g(t)
    c = float((g(torch.tensor(t_max, dtype=torch.float64)) - s) / t_max)
    f = (c - dg) ** 2
    h = t_max / 20000
    integral = float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))
    xi2 = float((x_T / t_max).pow(2).mean())  # E ξ² of these draws
    want = integral / t_max * xi2
    assert got == pytest.approx(want, rel=0.02)
    assert float(x0.mean()) == pytest.approx(m, abs=0.01) and float(x0.std()) == pytest.approx(s, rel=0.02)


def test_a_flow_to_a_point_is_straight():
    """Data at one point m (std 1e-5): the path from ξ is the line (1 − t) m + t ξ, straight by definition."""
    flow = schedules.get("flow")
    mix = GaussianMixture([[0.5, -1.0]], [1e-5], [1.0])
    got, x0 = straightness(mix.denoiser(flow), torch.randn(100, 2, dtype=torch.float64), steps=20)
    assert got < 1e-6
    torch.testing.assert_close(x0, torch.tensor([[0.5, -1.0]], dtype=torch.float64).expand(100, 2), rtol=0, atol=1e-3)


def test_straightness_needs_a_flow_model():
    mix = GaussianMixture([[0.0, 0.0]], [1.0], [1.0])
    with pytest.raises(DifflabError, match="defined for flow models"):
        straightness(mix.denoiser(schedules.get("linear")), torch.randn(4, 2), steps=5)


def _final_weights(run_dir):
    from difflab import checkpoint

    return checkpoint.load_tensors(checkpoint.latest_valid(run_dir), "ema")


def test_reflow_straightens_a_toy_flow_and_resumes_on_the_same_pairs(tmp_path, train_toy, fraction_near_modes):
    import json

    import difflab
    from difflab.training.reflow import PAIRS, reflow

    quiet = {"progress": False, "log": lambda *_: None}
    teacher = train_toy("8gaussians-flow", 2000, name="teacher")
    student = reflow(teacher, tmp_path / "student", pairs=4000, steps=1500, **quiet)
    report = json.loads((student / "straightness.json").read_text())
    assert report["reflowed"] < 0.05 * report["teacher"], report
    t_run, s_run = difflab.load(teacher), difflab.load(student)
    one_step = {name: fraction_near_modes(run, "ddim", 1) for name, run in (("teacher", t_run), ("student", s_run))}
    assert one_step["teacher"] < 0.1 and one_step["student"] > 0.6, one_step  # one Euler step now lands on the modes
    assert s_run.config["diffusion"]["formulation"] == "flow" and s_run.config["reflow"]["pairs"] == 4000

    # killed halfway (here: stopped at step 700) and resumed: the same pairs, the same final weights
    part = reflow(teacher, tmp_path / "resumed", pairs=4000, steps=700, **quiet)
    drawn = (part / PAIRS).stat().st_mtime_ns
    reflow(None, part, steps=1500, resume=True, **quiet)
    assert (part / PAIRS).stat().st_mtime_ns == drawn
    a, b = _final_weights(student), _final_weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reflow_refuses_what_it_cannot_straighten(tmp_path):
    from difflab.config import resolve
    from difflab.training.diffusion import train
    from difflab.training.reflow import reflow

    quiet = {"progress": False, "log": lambda *_: None}
    ddpm = train(resolve({"preset": "8gaussians", "data": {"num": 200}, "train": {"steps": 2, "save_every": 2}}),
                 tmp_path / "ddpm", **quiet)
    with pytest.raises(DifflabError, match="reflow straightens a flow-matching model, but .* diffusion.formulation 'ddpm'"):
        reflow(ddpm, tmp_path / "a", pairs=10, **quiet)
    flow = train(resolve({"preset": "8gaussians-flow", "data": {"num": 200}, "train": {"steps": 2, "save_every": 2}}),
                 tmp_path / "flow", **quiet)
    with pytest.raises(DifflabError, match="reflow needs pairs, the number of"):
        reflow(flow, tmp_path / "b", **quiet)
    with pytest.raises(DifflabError, match="must be deterministic; 'ddpm' draws fresh noise"):
        reflow(flow, tmp_path / "c", pairs=10, sampler="ddpm", **quiet)
    with pytest.raises(DifflabError, match="is not a reflow run"):
        reflow(None, ddpm, resume=True, **quiet)
    assert not any((tmp_path / d).exists() for d in "abc")
