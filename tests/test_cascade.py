"""difflab cascade: a 4x4 digits base and an 8x8 SR3 upsampler (tiny, a few training steps): the plumbing is
checked against closed forms (an upsampler started at t0 -> 0 returns the bicubic image of the base samples),
sample i comes out the same in any batch, and mismatched pairs are refused before sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflab.cli.main import main

BASE = """
preset: digits
data: {image_size: 4, num: 64}
model: {image_size: 4, base_channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [], groups: 8,
        num_classes: null}
diffusion: {T: 100}
train: {steps: 4, batch_size: 16, log_every: 2, save_every: 4, sample_every: 0}
sample: {steps: 5}
"""
SR = """
preset: digits
data: {low_res_factor: 2, num: 64}
model: {base_channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [], groups: 8,
        num_classes: null, cond_channels: 1}
diffusion: {T: 100}
train: {steps: 4, batch_size: 16, log_every: 2, save_every: 4, sample_every: 0}
sample: {steps: 5}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("cascade")
    for name, text in (("base", BASE), ("sr", SR)):
        (d / f"{name}.yaml").write_text(text)
        assert main(["train", str(d / f"{name}.yaml"), "--out", str(d / name), "--no-progress"]) == 0
    return d


def test_cascade_passes_the_base_samples_to_the_upsampler(pair):
    from difflab.run import load
    from difflab.tasks.cascade import cascade

    base, sr = load(pair / "base"), load(pair / "sr")
    r = cascade(base, sr, 5, seed=3, base_options={"steps": 5}, sr_steps=5, sr_start=1e-9)
    assert r.low.shape == (5, 1, 4, 4) and r.high.shape == (5, 1, 8, 8)
    bicubic = F.interpolate(r.low.clamp(0, 1), scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(r.high, bicubic, atol=1e-6)  # t0 below the schedule: SR3 returns its conditioning image
    full = cascade(base, sr, 5, seed=3, base_options={"steps": 5}, sr_steps=5)
    alone = cascade(base, sr, 5, seed=3, base_options={"steps": 5}, sr_steps=5, batch_size=2)
    assert torch.equal(full.low, r.low) and torch.allclose(full.high, alone.high, atol=1e-5)
    assert not torch.allclose(full.high, bicubic, atol=1e-2)  # sampled from noise, it is not the bicubic image


def test_cli_cascade_writes_both_stages(pair, tmp_path, capsys):
    out, low = tmp_path / "hi.npz", tmp_path / "lo.png"
    assert main(["cascade", str(pair / "base"), str(pair / "sr"), "--num", "4", "--steps", "3", "--sr-steps", "3",
                 "--out", str(out), "--low", str(low), "--no-progress"]) == 0
    assert np.load(out)["samples"].shape == (4, 1, 8, 8) and low.stat().st_size > 100
    assert "upscaled ×2" in capsys.readouterr().out


@pytest.mark.parametrize("which,args,message", [
    ("swap", [], "is itself a super-resolution model"),
    ("same", [], "is not a super-resolution model"),
    ("ok", ["--out", "x.jpg"], "must end in .png or .npz"),
    ("ok", ["--scale", "2"], "--scale needs --guidance"),
    ("ok", ["--sr-start", "0"], "--sr-start must lie in (0, 1]"),
    ("ok", ["--guidance", "classifier"], "go together"),
])
def test_cli_cascade_bad_input(pair, tmp_path, capsys, which, args, message):
    base, sr = {"swap": ("sr", "base"), "same": ("base", "base"), "ok": ("base", "sr")}[which]
    argv = ["cascade", str(pair / base), str(pair / sr), "--no-progress", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "o.png")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*"))
