"""Continuous-time and NCSN models train through the same loop and every sampler runs on them."""

import pytest
import torch

import difflab
from difflab import samplers
from difflab.config import resolve
from difflab.training.diffusion import train

TINY = {"model": {"hidden": 32, "depth": 2, "time_dim": 16}, "data": {"num": 2000},
        "train": {"steps": 30, "batch_size": 64, "log_every": 10, "save_every": 30, "num_samples": 16}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for preset in ("8gaussians-vp", "8gaussians-ve", "8gaussians-ncsn"):
        cfg = resolve({"preset": preset, **TINY})
        out[preset] = difflab.load(train(cfg, tmp_path_factory.mktemp(preset) / "run", progress=False, log=lambda *_: None))
    return out


def test_schedules_are_the_presets(runs):
    assert runs["8gaussians-vp"].schedule.name == "vp" and not runs["8gaussians-vp"].schedule.discrete
    assert runs["8gaussians-ve"].schedule.sigma_max == 4.0
    assert runs["8gaussians-ncsn"].schedule.T == 20 and runs["8gaussians-ncsn"].schedule.discrete


@pytest.mark.parametrize("preset", ["8gaussians-vp", "8gaussians-ve", "8gaussians-ncsn"])
@pytest.mark.parametrize("name", [n for n in samplers.names() if not samplers.info(n)["only_for"]])
def test_every_sampler_runs_on_score_models(runs, preset, name):
    run = runs[preset]
    info = samplers.info(name)
    steps = max(info["min_steps"], 4)
    x = run.sample(32, sampler=name, steps=steps, generator=torch.Generator().manual_seed(0))
    assert x.shape == (32, 2) and torch.isfinite(x).all()
