"""Step discretizations: each is checked against the property that defines it."""


import numpy as np
import pytest
import torch

from difflab import schedules
from difflab.errors import DifflabError
from difflab.samplers.discretizations import discretize

SCHEDULES = [("linear", {}), ("cosine", {}), ("vp", {}), ("ve", {"sigma_max": 10.0}), ("ncsn", {"levels": 30, "sigma_max": 5.0})]


def _sched(name, params):
    return schedules.get(name, T=1000, **params)


@pytest.mark.parametrize("name,params", SCHEDULES)
@pytest.mark.parametrize("disc", ["trailing", "leading", "linspace", "quadratic", "karras", "logsnr"])
def test_decreasing_within_range(name, params, disc):
    s = _sched(name, params)
    ts = discretize(s, 12, disc).double()
    assert len(ts) == 12 and torch.all(ts[:-1] > ts[1:])
    assert ts.max() <= s.t_max + 1e-9 and ts.min() >= s.t_min - 1e-9 - (1 if disc == "leading" else 0)


@pytest.mark.parametrize("name,params", SCHEDULES)
def test_karras_logsnr_quadratic_are_evenly_spaced_in_their_coordinate(name, params):
    s = _sched(name, params)
    ts = discretize(s, 15, "karras")
    sig = torch.exp(-s.lambda_(ts) / 2).numpy()  # σ/α
    # EDM Eq. 5: evenly spaced in σ̃^(1/ρ) from σ_max = min(the schedule's largest σ̃, 80) (EDM Table 1) down to
    # the smallest; the first time is the schedule's last, where sampling starts
    assert ts[0].item() == pytest.approx(s.t_max)
    root = sig[1:] ** (1 / 7)
    step = np.diff(root)[0]
    np.testing.assert_allclose(np.diff(root), step, rtol=1e-6, atol=1e-9)
    assert root[0] - step == pytest.approx(min(sig[0], 80.0) ** (1 / 7), rel=1e-6)
    lam = s.lambda_(discretize(s, 15, "logsnr")).numpy()
    np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-6)
    assert s.lambda_(discretize(s, 15, "logsnr"))[0].item() == pytest.approx(s.lambda_(torch.tensor(s.t_max)).item(), rel=1e-9)
    root = discretize(s, 15, "quadratic").sqrt().numpy()
    np.testing.assert_allclose(np.diff(root), np.diff(root)[0], rtol=1e-9)


def test_sections_follow_guided_diffusion():
    """300 timesteps as sections "10,15,20": 10 steps in the first 100, 15 in the next, 20 in the last,
    each section's first and last index visited (guided diffusion, respace.py docstring)."""
    s = schedules.get("linear", T=300)
    ts = discretize(s, 45, "sections:10,15,20")
    idx = (ts - 1).numpy()  # back to 0-based indices
    assert [(idx < 100).sum(), ((idx >= 100) & (idx < 200)).sum(), (idx >= 200).sum()] == [10, 15, 20]
    for lo, hi in ((0, 99), (100, 199), (200, 299)):
        assert lo in idx and hi in idx
    gaps = np.diff(np.sort(idx[idx >= 200]))
    assert gaps.max() - gaps.min() <= 1


@pytest.mark.parametrize("disc,steps,match", [
    ("wobbly", 10, "unknown discretization"), ("sections:5,5", 11, "add up"), ("sections:a,b", 2, "comma-separated"),
    ("trailing", 0, "steps"), ("trailing", 1001, "steps"),
])
def test_bad_discretizations(disc, steps, match):
    with pytest.raises(DifflabError, match=match):
        discretize(schedules.get("linear"), steps, disc)


def test_sections_need_a_discrete_schedule():
    with pytest.raises(DifflabError, match="discrete"):
        discretize(schedules.get("vp"), 10, "sections:5,5")
