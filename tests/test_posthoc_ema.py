"""Post-hoc EMA (Karras et al. 2024) against independent references: σ_rel is the standard deviation of a
Beta(γ + 1, 1) (scipy), the profiles' inner products equal numerical quadrature, a tracked power average equals the
profile-weighted integral of a known weight trajectory, and the average synthesized from snapshots of two lengths
equals the one tracked directly at a third length. Then the loop: snapshots written on schedule, bit for bit the
same after a resume, and ``difflab posthoc-ema`` writing a model that samples."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from difflab.cli.main import main
from difflab.config import resolve
from difflab.errors import DifflabError
from difflab.training import posthoc_ema as ph
from difflab.training.diffusion import train


@pytest.mark.parametrize("sigma_rel", [0.01, 0.05, 0.1, 0.2, 0.28])
def test_sigma_rel_is_the_std_of_the_profile(sigma_rel):
    gamma = ph.gamma_of_sigma_rel(sigma_rel)
    assert stats.beta(gamma + 1, 1).std() == pytest.approx(sigma_rel, rel=1e-9)  # τ/t ~ Beta(γ + 1, 1)
    assert ph.sigma_rel_of_gamma(gamma) == pytest.approx(sigma_rel, rel=1e-12)


def test_the_paper_s_two_tracked_lengths():
    # EDM2 tracks σ_rel 0.05 and 0.10: γ ≈ 16.97 and 6.94 (Karras et al. 2024, Sec. 3.2)
    assert ph.gamma_of_sigma_rel(0.05) == pytest.approx(16.97, abs=0.01)
    assert ph.gamma_of_sigma_rel(0.10) == pytest.approx(6.94, abs=0.01)


@pytest.mark.parametrize("ta,ga,tb,gb", [(100, 6.94, 100, 16.97), (40, 3.0, 100, 6.94), (100, 0.5, 30, 12.0)])
def test_profile_dot_equals_quadrature(ta, ga, tb, gb):
    def p(t, g):
        return lambda tau: (g + 1) * tau ** g / t ** (g + 1) if tau <= t else 0.0
    pa, pb = p(ta, ga), p(tb, gb)
    ref, _ = integrate.quad(lambda tau: pa(tau) * pb(tau), 0, min(ta, tb), epsabs=0, epsrel=1e-12, limit=200)
    assert ph.profile_dot(ta, ga, tb, gb) == pytest.approx(ref, rel=1e-8)
    assert ph.profile_dot(ta, ga, tb, gb) == pytest.approx(ph.profile_dot(tb, gb, ta, ga), rel=1e-12)


class _Param(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))


def _trajectory(step):
    """A known weight trajectory θ(τ): smooth, with a different shape per coordinate."""
    tau = torch.tensor(float(step), dtype=torch.float64)
    return torch.stack([tau / 1000, torch.sin(tau / 150), (tau / 1000) ** 2, torch.cos(tau / 400)])


def test_a_tracked_power_average_is_the_profile_weighted_integral():
    model = _Param(4)
    ema = ph.PowerEMA(model, 0.1)
    steps = 2000
    for step in range(1, steps + 1):
        model.w.data.copy_(_trajectory(step))
        ema.update(model, step)
    g = ema.gamma
    ref = [integrate.quad(lambda tau, i=i: (g + 1) * tau ** g / steps ** (g + 1) * float(_trajectory(tau)[i]),
                          0, steps, limit=200)[0] for i in range(4)]
    np.testing.assert_allclose(ema.model.w.detach().numpy(), ref, atol=2e-3)


def test_synthesis_from_snapshots_equals_the_average_tracked_directly(tmp_path):
    """Snapshots of σ_rel 0.05 and 0.1 every 100 steps give the σ_rel 0.075 and 0.15 averages at the end; the
    references are power averages tracked at those lengths."""
    model = _Param(4)
    tracked = {s: ph.PowerEMA(model, s) for s in (0.05, 0.1, 0.075, 0.15)}
    steps = 2000
    for step in range(1, steps + 1):
        model.w.data.copy_(_trajectory(step))
        for e in tracked.values():
            e.update(model, step)
        if step % 100 == 0:
            for s in (0.05, 0.1):
                ph.write_snapshot(tmp_path, tracked[s], step)
    scale = float(torch.linalg.vector_norm(tracked[0.1].model.w))
    for target in (0.075, 0.15):
        state, info = ph.synthesize(tmp_path, target)
        assert info["step"] == steps and len(info["snapshots"]) == 40
        err = float(torch.linalg.vector_norm(state["w"] - tracked[target].model.w)) / scale
        naive = float(torch.linalg.vector_norm(tracked[0.1].model.w - tracked[target].model.w)) / scale
        assert err < 0.01 and err < naive / 5, (target, err, naive)
    # asking for a stored length gives that snapshot back
    state, info = ph.synthesize(tmp_path, 0.1)
    torch.testing.assert_close(state["w"], tracked[0.1].model.w.detach(), rtol=1e-6, atol=1e-8)
    assert info["profile_error"] < 1e-6
    # and an earlier step uses only the snapshots up to it
    _, info = ph.synthesize(tmp_path, 0.1, step=1000)
    assert info["step"] == 1000 and len(info["snapshots"]) == 20


@pytest.mark.parametrize("bad", [0, -0.1, 0.29, 1.0, True, "0.1"])
def test_sigma_rel_outside_the_profiles_is_refused(bad):
    with pytest.raises(DifflabError, match="must lie strictly between 0 and 0.2887"):
        ph.check_sigma_rel(bad)


TOY = {"preset": "8gaussians", "model": {"hidden": 32, "depth": 2, "time_dim": 16}, "diffusion": {"T": 100},
       "train": {"steps": 20, "batch_size": 64, "log_every": 5, "save_every": 10, "sample_every": 0, "num_samples": 8,
                 "posthoc_ema": [0.05, 0.1], "posthoc_every": 5},
       "sample": {"steps": 5}, "data": {"num": 500}}


def _train(out, **kw):
    train(resolve(TOY), out, progress=False, log=lambda *_: None, device="cpu", **kw)


def test_the_loop_writes_snapshots_and_resumes_them_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    _train(tmp_path / "once")
    snaps = ph.list_snapshots(tmp_path / "once")
    assert [(s, t) for s, t, _ in snaps] == [(s, t) for t in (5, 10, 15, 20) for s in (0.05, 0.1)]
    _train(tmp_path / "twice", steps=10)
    _train(tmp_path / "twice", resume=True, steps=20)
    for (_, _, a), (_, _, b) in zip(snaps, ph.list_snapshots(tmp_path / "twice"), strict=True):
        ta, tb = load_file(str(a)), load_file(str(b))
        assert all(torch.equal(ta[k], tb[k]) for k in ta), a.name


def test_posthoc_ema_command_writes_a_model_that_samples(tmp_path, capsys):
    run = tmp_path / "run"
    _train(run)
    out = tmp_path / "m08"
    assert main(["posthoc-ema", str(run), "--sigma-rel", "0.08", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "σ_rel = 0.08" in stdout and "8 snapshots" in stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["weights"] == "posthoc-ema sigma_rel=0.08" and meta["step"] == 20
    assert main(["sample", str(out), "--num", "16", "--out", str(tmp_path / "s.npz"), "--no-progress"]) == 0
    samples = np.load(tmp_path / "s.npz")["samples"]
    assert samples.shape == (16, 2) and np.isfinite(samples).all()
    capsys.readouterr()
    assert main(["posthoc-ema", str(run), "--list"]) == 0  # the snapshots the run holds, from their files
    assert capsys.readouterr().out.splitlines() == [f"step {t}: σ_rel 0.05, 0.1" for t in (5, 10, 15, 20)]
    assert main(["posthoc-ema", str(run), "--sigma-rel", "0.1"]) == 2
    assert "needs --sigma-rel and --out" in capsys.readouterr().err
    # bad input: one sentence each, nothing written
    for args, match in [(["--sigma-rel", "0.5"], "must lie strictly between 0 and 0.2887"),
                        (["--sigma-rel", "0.1", "--step", "7"], "has no snapshot at step 7"),
                        (["--sigma-rel", "0.1"], "already exists")]:
        target = out if match == "already exists" else tmp_path / "x"
        assert main(["posthoc-ema", str(run), *args, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
        assert target == out or not target.exists()


def test_a_run_without_snapshots_is_refused(tmp_path, capsys):
    cfg = json.loads(json.dumps(TOY))
    cfg["train"].pop("posthoc_ema")
    train(resolve(cfg), tmp_path / "run", progress=False, log=lambda *_: None, device="cpu")
    assert main(["posthoc-ema", str(tmp_path / "run"), "--sigma-rel", "0.1", "--out", str(tmp_path / "m")]) == 2
    assert "holds no post-hoc EMA snapshots" in capsys.readouterr().err


def test_config_refuses_bad_posthoc_keys(tmp_path):
    for train_keys, match in [({"posthoc_ema": [0.5]}, "train.posthoc_ema"),
                              ({"posthoc_ema": 0.1}, "train.posthoc_ema must be a list"),
                              ({"posthoc_every": -1}, "train.posthoc_every")]:
        cfg = json.loads(json.dumps(TOY))
        cfg["train"].update(train_keys)
        with pytest.raises(DifflabError, match=match):
            train(resolve(cfg), tmp_path / "bad", progress=False, log=lambda *_: None, device="cpu")
        assert not (tmp_path / "bad").exists()


def test_math_is_exact_at_one_snapshot():
    # one snapshot of the target profile itself: weight 1
    w = ph.solve_weights([100.0], [ph.gamma_of_sigma_rel(0.1)], 100.0, ph.gamma_of_sigma_rel(0.1))
    assert w == pytest.approx([1.0], rel=1e-12)
    assert ph.power_beta(1, 5.0) == 0.0 and math.isclose(ph.power_beta(10, 0.0), 0.9)
