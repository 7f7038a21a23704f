"""The command line: the contract of issue #2, and one clear sentence with exit status 2 for bad input."""

import subprocess
import sys

import numpy as np
import torch
import pytest

from difflab.cli.main import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def toy_run(tiny_toy_config, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", tiny_toy_config, "--out", out, "--no-progress")
    assert code == 0, err
    return out


def test_train_and_sample_outputs(toy_run, tmp_path, capsys):
    npz = tmp_path / "s.npz"
    code, out, err = run_cli(capsys, "sample", toy_run, "--sampler", "ddim", "--steps", 10, "--num", 50, "--out", npz, "--no-progress")
    assert code == 0, err
    samples = np.load(npz)["samples"]
    assert samples.shape == (50, 2) and samples.dtype == np.float32
    # sample i depends on (seed, i) alone: a smaller --num and --batch-size give the same first rows
    npz2 = tmp_path / "s2.npz"
    run_cli(capsys, "sample", toy_run, "--sampler", "ddim", "--steps", 10, "--num", 7, "--batch-size", 3, "--out", npz2, "--no-progress")
    np.testing.assert_allclose(np.load(npz2)["samples"], samples[:7], rtol=1e-5, atol=1e-5)
    png = tmp_path / "s.png"
    code, _, err = run_cli(capsys, "sample", toy_run, "--sampler", "ddpm", "--steps", 20, "--num", 30, "--out", png, "--no-progress")
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,match", [
    (["--steps", "0"], "steps must be an integer from 1 to T = 100"),
    (["--steps", "101"], "steps must be an integer from 1 to T = 100"),
    (["--eta", "-1"], "eta must be a number >= 0"),
    (["--sampler", "magic"], "unknown sampler 'magic'"),
    (["--sampler", "ddpm", "--eta", "0.5"], "--eta applies to the ddim sampler"),
    (["--num", "0"], "--num must be a positive integer"),
])
def test_sample_bad_input(toy_run, tmp_path, capsys, args, match):
    target = tmp_path / "bad.npz"
    code, _, err = run_cli(capsys, "sample", toy_run, "--out", target, "--no-progress", *args)
    assert code == 2 and match in err and err.count("\n") == 1
    assert not target.exists()


def test_sample_from_missing_or_truncated_checkpoint(toy_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", tmp_path / "nowhere", "--out", tmp_path / "x.npz")
    assert code == 2 and "does not exist" in err
    from difflab import checkpoint
    for ckpt in checkpoint.list_checkpoints(toy_run):
        data = (ckpt / "ema.safetensors").read_bytes()
        (ckpt / "ema.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "sample", toy_run, "--out", tmp_path / "x.npz")
    assert code == 2 and "truncated or corrupt" in err and "ema.safetensors" in err


@pytest.mark.parametrize("config_text,match", [
    (None, "unknown preset 'no-such-preset'"),
    ("preset: 8gaussians\ntrain: {stpes: 5}\n", "unknown config key 'train.stpes'"),
    ("preset: 8gaussians\nmodel: {widht: 5}\n", "widht"),
    ("preset: 8gaussians\ndiffusion: {schedule: wobbly}\n", "unknown schedule 'wobbly'"),
    ("preset: 8gaussians\nsample: {steps: 5000}\n", "steps must be an integer from 1 to T"),
    ("preset: 8gaussians\ntrain: {batch_size: 0}\n", "train.batch_size must be a positive integer"),
    ("preset: 8gaussians\ntrain: {lr: true}\n", "train.lr must be a positive number, got True"),
    ("preset: 8gaussians\ntrain: {lr: .inf}\n", "train.lr must be a positive number, got inf"),
    ("preset: 8gaussians\ntrain: {ema_decay: 1.0}\n", "train.ema_decay must be a number in [0, 1), got 1.0"),
    ("preset: 8gaussians\ntrain: {weight_decay: -0.1}\n", "train.weight_decay must be a number >= 0, got -0.1"),
    ("preset: 8gaussians\ntrain: {grad_clip: -1}\n", "train.grad_clip must be a number >= 0 (0 turns clipping off)"),
    ("preset: 8gaussians\ntrain: {warmup: 1.5}\n", "train.warmup must be an integer >= 0, got 1.5"),
    ("preset: 8gaussians\nseed: -1\n", "seed must be an integer from 0 to 9223372036854775806, got -1"),
    ("preset: 8gaussians\ndata: {name: nowhere-data}\n", "nowhere-data"),
    ("preset: [unclosed\n", "could not be parsed"),
])
def test_train_bad_config(tmp_path, capsys, config_text, match):
    if config_text is None:
        spec = "no-such-preset"
    else:
        spec = tmp_path / "c.yaml"
        spec.write_text(config_text)
    code, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and match in err, err
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_out_it_cannot_create(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "train", "8gaussians", "--out", tmp_path / "file" / "run", "--no-progress")
    assert code == 2 and "cannot create the run directory" in err and "is not a writable directory" in err, err
    assert (tmp_path / "file").read_text() == "x"


def test_train_bad_steps_and_resume(tiny_toy_config, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", tiny_toy_config, "--out", tmp_path / "r", "--steps", "-3", "--no-progress")
    assert code == 2 and "--steps must be a positive integer" in err
    code, _, err = run_cli(capsys, "train", tiny_toy_config, "--out", tmp_path / "none", "--resume", "--no-progress")
    assert code == 2 and "cannot resume" in err


def test_schedules_command(tmp_path, capsys):
    png = tmp_path / "sched.png"
    code, out, _ = run_cli(capsys, "schedules", "--plot", png)
    assert code == 0 and png.exists()
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:] if ln.split() and ln.split()[0] in ("linear", "cosine")}
    assert float(lines["linear"][2]) < 0.1 < float(lines["cosine"][2])  # ᾱ(T/2)


def test_module_entry_point_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "difflab", "train", "bogus", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown preset 'bogus'" in proc.stderr
    assert subprocess.run([sys.executable, "-m", "difflab", "--help"], capture_output=True).returncode == 0


def test_quick_demo_writes_every_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "--out", out, "--quick")
    assert code == 0, err
    pictures = ["mnist_samples.png", "mnist-fast_samples.png", "mnist_steps.png", "mnist_guidance.png", "mnist_denoising.gif",
                "mnist_denoising.png", "fashion-mnist_samples.png", "toy_samples.png", "toy_forward_process.png",
                "toy_reverse_process.png", "toy_loss.png"]
    page = (out / "index.html").read_text()
    for rel in pictures:
        assert (out / rel).stat().st_size > 1000, rel
        assert str(out / rel) in stdout
        assert f'src="{rel}"' in page, rel  # the page shows every picture
    from PIL import Image
    with Image.open(out / "mnist_denoising.gif") as gif:
        assert gif.n_frames > 2  # an animation, not a still
    # the shipped models' samples are drawn with the setting recorded with each model
    assert "DDPM 50 steps from the Gaussian start σ̃ = 5" in page and "(DDIM 2 steps)" in page
    # a directory that is not a demo directory is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    code, _, err = run_cli(capsys, "demo", "--out", other, "--quick")
    assert code == 2 and "not a difflab demo directory" in err and (other / "precious.txt").read_text() == "keep"


def test_likelihood_command(toy_run, tmp_path, capsys):
    out = tmp_path / "nll.json"
    code, stdout, err = run_cli(capsys, "likelihood", toy_run, "--num", 8, "--rtol", "1e-3", "--atol", "1e-3", "--out", out)
    assert code == 0, err
    import json
    result = json.loads(out.read_text())
    assert result["unit"] == "nats" and result["num"] == 8 and np.isfinite(result["mean"])
    assert "NLL (nats)" in stdout
    code, _, err = run_cli(capsys, "likelihood", toy_run, "--method", "elbo")
    assert code == 2 and "unknown likelihood method 'elbo'" in err
    code, _, err = run_cli(capsys, "likelihood", toy_run, "--method", "vlb")  # the bound is for 8-bit images
    assert code == 2 and "defined for 8-bit images" in err
    code, _, err = run_cli(capsys, "likelihood", toy_run, "--rtol", "0")
    assert code == 2 and "rtol" in err


def test_sampler_options_from_the_command_line(toy_run, tmp_path, capsys):
    out = tmp_path / "o.npz"
    code, _, err = run_cli(capsys, "sample", toy_run, "--sampler", "dpm_solver", "--steps", 4, "--option", "order=2",
                           "--num", 5, "--out", out, "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "sample", toy_run, "--sampler", "dpm_solver", "--steps", 4, "--option", "order=7",
                           "--num", 5, "--out", out, "--no-progress")
    assert code == 2 and "order" in err
    code, _, err = run_cli(capsys, "sample", toy_run, "--sampler", "ode", "--option", "bogus=1", "--out", out, "--no-progress")
    assert code == 2 and "no option 'bogus'" in err
    code, _, err = run_cli(capsys, "sample", toy_run, "--option", "novalue", "--out", out, "--no-progress")
    assert code == 2 and "KEY=VALUE" in err


def test_trajectory_starts_where_difflab_sample_starts(tmp_path, capsys):
    """`difflab trajectory NAME` records the very run `Run.sample` draws with the model's recorded setting (the
    Gaussian start included), and `--gaussian-start 0` the run from pure noise."""
    from difflab.run import load

    run = load("mnist")
    for flag, start in ((None, None), ("0", 0)):
        out = tmp_path / f"t{flag}.npz"
        code, stdout, err = run_cli(capsys, "trajectory", "mnist", "--num", 2, "--steps", 6, "--out", out,
                                    *(["--gaussian-start", flag] if flag else []))
        assert code == 0, err
        assert ("from the Gaussian start σ̃ = 5" in stdout) == (flag is None)
        rec = np.load(out)
        ref = run.sample(2, steps=6, generator=torch.Generator().manual_seed(0), gaussian_start=start)
        np.testing.assert_array_equal(rec["x_t"][-1], ref.numpy())
        assert (rec["times"][0] < 1000) == (flag is None)  # the network starts below t = T only from the Gaussian
