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


def test_a_whole_factor_shrink_is_the_upsamplers_average_pool():
    """The base's training images are exactly what the upsampler is conditioned on: a 2x shrink of the 8x8 digits is
    the mean of each 2x2 block (recomputed here in float64 by reshaping), the low_res image of data.lowres."""
    from difflab.data import load_dataset
    from difflab.data.lowres import low_res

    full = load_dataset("digits", split="train").data
    small = load_dataset("digits", split="train", image_size=4).data
    blocks = full.double().reshape(-1, 1, 4, 2, 4, 2).mean(dim=(3, 5))
    assert small.shape == (full.shape[0], 1, 4, 4)
    assert torch.allclose(small.double(), blocks, atol=1e-6)
    assert torch.allclose(small, low_res(full, 2), atol=1e-6)


def test_the_cascade_reproduction_gives_its_stages_the_single_stage_models_flops():
    """difflab reproduce cascade: each stage's length makes (base + upsampler) FLOPs equal the single stage's, to
    within one step; the 4x4 base costs about a quarter of the 8x8 networks (a quarter of the pixels)."""
    from difflab.reproduce.cascade import configs, forward_flops, stage_length

    assert stage_length(1000, {"single": 4, "base": 1, "upsampler": 4}) == 800
    assert stage_length(3, {"single": 1, "base": 100, "upsampler": 100}) == 1  # never zero steps
    flops = {k: forward_flops(c) for k, c in configs().items()}
    s = stage_length(2000, flops)
    assert abs(s * (flops["base"] + flops["upsampler"]) - 2000 * flops["single"]) <= flops["base"] + flops["upsampler"]
    assert 0.2 < flops["base"] / flops["single"] < 0.3
    assert 0.9 < flops["upsampler"] / flops["single"] < 1.1  # the same network with one more input channel


def test_training_seconds_add_up_over_resumed_invocations(tmp_path):
    from difflab.reproduce.cascade import training_seconds

    (tmp_path / "log.csv").write_text("step,loss,lr,grad_norm,seconds\n100,1,1,1,4.0\n200,1,1,1,9.5\n"
                                      "300,1,1,1,3.0\n400,1,1,1,6.25\n")
    assert training_seconds(tmp_path) == pytest.approx(9.5 + 6.25)
