"""Tuned time steps (difflab.tuning, difflab tune-steps) on the exact mixture oracle: on fresh noise, against a
tighter ODE reference than the one tuned on, the tuned times beat every fixed discretization; and the refusals."""

import json

import numpy as np
import pytest
import torch

from difflab import samplers, schedules, tuning
from difflab.cli.main import main
from difflab.data.toys import GAUSSIANS8_CENTRES
from difflab.errors import DifflabError
from difflab.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")
MIX = GaussianMixture(GAUSSIANS8_CENTRES / 1.42, 0.1 / 1.42)  # the standardised 8 Gaussians


def _distance(den, sampler, steps, x_T, ref, **where) -> float:
    x = samplers.sample(den, x_T.shape, sampler=sampler, steps=steps, x_T=x_T, **where)
    return float((x.double() - ref).pow(2).sum(1).mean())


@pytest.mark.parametrize("schedule_name,sampler,nfe", [("linear", "ddim", 5), ("linear", "dpmpp_2m", 10),
                                                       ("vp", "ddim", 5), ("vp", "heun", 10)])
def test_tuned_steps_beat_every_fixed_discretization_on_fresh_noise(schedule_name, sampler, nfe):
    """Tuned on 256 draws; judged on 1,000 other draws against the ODE solution at rtol 10⁻⁷ (tighter than the
    tuning's 10⁻⁵): the tuned times' mean squared distance is below that of each of trailing, quadratic, karras,
    logsnr, leading and linspace."""
    sch = schedules.get(schedule_name)
    den = MIX.denoiser(sch)
    tuned = tuning.tune(den, (2,), sampler, nfe, num=256, max_evaluations=300)
    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(99))
    ref = samplers.sample(den, x_T.shape, sampler="ode", steps=1, x_T=x_T, rtol=1e-7, atol=1e-7).double()
    fixed = {d: _distance(den, sampler, tuned.steps, x_T, ref, discretization=d)
             for d in ("trailing", "quadratic", "karras", "logsnr", "leading", "linspace")}
    mine = _distance(den, sampler, tuned.steps, x_T, ref, timesteps=tuned.times)
    assert mine < min(fixed.values()), (mine, fixed)
    assert tuned.errors["tuned"] < min(v for k, v in tuned.errors.items() if k != "tuned")


def test_steps_for_nfe_counts_evaluations_and_refuses_what_cannot_be_matched():
    den = MIX.denoiser(schedules.get("vp"))
    assert tuning.steps_for_nfe(den, "ddim", 7, (1, 2)) == 7
    assert tuning.steps_for_nfe(den, "heun", 10, (1, 2)) * 2 == 10
    with pytest.raises(DifflabError, match="makes exactly 9 network evaluations at no step count"):
        tuning.steps_for_nfe(den, "heun", 9, (1, 2))
    with pytest.raises(DifflabError, match="draws fresh noise"):
        tuning.steps_for_nfe(den, "ddpm", 10, (1, 2))
    with pytest.raises(DifflabError, match="chooses its own steps"):
        tuning.steps_for_nfe(den, "ode", 10, (1, 2))
    with pytest.raises(DifflabError, match="nfe.*positive integer"):
        tuning.steps_for_nfe(den, "ddim", 0, (1, 2))


def test_given_timesteps_are_checked():
    den = MIX.denoiser(schedules.get("linear"))
    x_T = torch.randn(4, 2)
    ok = samplers.sample(den, x_T.shape, sampler="ddim", steps=3, x_T=x_T, timesteps=[1000, 500.5, 20])
    assert ok.shape == (4, 2)
    for bad, message in (([1000, 500], "2 timesteps were given for 3 steps"),
                         ([900, 500, 20], "must decrease strictly from t_max = 1000"),
                         ([1000, 20, 500], "must decrease strictly"),
                         ([1000, 500, 0.5], "stay >= t_min")):
        with pytest.raises(DifflabError, match=message):
            samplers.sample(den, x_T.shape, sampler="ddim", steps=3, x_T=x_T, timesteps=bad)
    with pytest.raises(DifflabError, match="either a discretization or the timesteps"):
        samplers.sample(den, x_T.shape, sampler="ddim", steps=3, x_T=x_T, timesteps=[1000, 500, 20],
                        discretization="karras")


def test_saved_entries_are_found_by_sampler_and_steps(tmp_path):
    t = tuning.TunedSteps("ddim", 5, 5, [1000.0, 700.0, 300.0, 80.0, 1.0], {"tuned": 0.1})
    tuning.save(tmp_path, t)
    tuning.save(tmp_path, tuning.TunedSteps("ddim", 5, 5, [1000.0, 600.0, 300.0, 80.0, 2.0], {"tuned": 0.05}))
    assert tuning.load(tmp_path, "ddim", 5) == [1000.0, 600.0, 300.0, 80.0, 2.0]  # replaced, not appended
    assert len(json.loads((tmp_path / tuning.FILE).read_text())["entries"]) == 1
    with pytest.raises(DifflabError, match=r"no tuned steps for sampler 'ddim' at 6 steps .*tuned: ddim at 5 NFE"):
        tuning.load(tmp_path, "ddim", 6)
    (tmp_path / tuning.FILE).write_text("{not json")
    with pytest.raises(DifflabError, match="is corrupt; delete it"):
        tuning.load(tmp_path, "ddim", 5)


def test_cli_tunes_a_run_and_samples_with_its_times(train_toy, capsys, tmp_path):
    run = train_toy("8gaussians", 200)
    assert main(["tune-steps", str(run), "--nfe", "4", "--sampler", "ddim", "--num", "64", "--max-evaluations", "60",
                 "--no-progress"]) in (0, None)
    printed = capsys.readouterr().out
    assert "tuned" in printed and (run / tuning.FILE).exists()
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--sampler", "ddim", "--steps", "4", "--discretization", "tuned", "--num", "20",
                 "--out", str(out), "--no-progress"]) in (0, None)
    assert np.load(out)["samples"].shape == (20, 2)
    code = main(["sample", str(run), "--sampler", "ddim", "--steps", "5", "--discretization", "tuned", "--num", "20",
                 "--out", str(tmp_path / "t.npz"), "--no-progress"])
    assert code == 2 and "no tuned steps for sampler 'ddim' at 5 steps" in capsys.readouterr().err
    assert main(["tune-steps", "mnist", "--nfe", "4"]) == 2
    assert "is a shipped model, which is read-only; copy its directory" in capsys.readouterr().err
