"""Trainer, checkpoints and the run API: files written, exact resume, corrupt checkpoints, loading."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

import difflab
from difflab.config import resolve
from difflab.errors import DifflabError
from difflab.run import Normalization
from difflab import checkpoint
from difflab.training.diffusion import train


def _train(cfg_path, out, **kw):
    return train(resolve(str(cfg_path)), out, progress=False, log=lambda *_: None, **kw)


def test_run_directory_layout_and_load(tiny_toy_config, tmp_path):
    out = _train(tiny_toy_config, tmp_path / "run")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "log.csv", "loss.png", "samples"} <= names
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["ckpt-00000020", "ckpt-00000030", "ckpt-00000040"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    cfg = json.loads((out / "config.json").read_text())
    assert "normalization" not in cfg and cfg["train"]["steps"] == 40  # the config as asked for ...
    record = json.loads((out / "record.json").read_text())  # ... and beside it what training measured
    assert record["normalization"]["kind"] == "toy" and len(record["normalization"]["shift"]) == 2
    assert checkpoint.read_config(out)["normalization"] == record["normalization"]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 1 + 4
    run = difflab.load(out)
    assert run.step == 40 and run.schedule.T == 100 and run.kind == "toy"
    x = run.sample(16, sampler="ddim", steps=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (16, 2) and torch.isfinite(x).all()
    # the EMA weights are the ones loaded by default, and they differ from the raw weights
    raw = difflab.load(out, weights="model")
    assert any(not torch.equal(a, b) for a, b in zip(run.model.parameters(), raw.model.parameters()))


def test_normalization_round_trip_and_coordinates():
    data = torch.randn(1000, 2, dtype=torch.float64) * torch.tensor([3.0, 0.5]) + torch.tensor([4.0, -2.0])
    norm = Normalization.fit("toy", data)
    z = norm.to_model(data)
    assert abs(z.mean(0)).max() < 1e-9 and z.std(0).mean().item() == pytest.approx(1.0, rel=1e-9)
    torch.testing.assert_close(norm.to_data(z), data)
    img = torch.rand(3, 1, 4, 4)
    inorm = Normalization.fit("image", img)
    assert inorm.to_model(img).min() >= -1 and inorm.to_model(img).max() <= 1
    torch.testing.assert_close(inorm.to_data(inorm.to_model(img)), img)


def test_resume_continues_bit_for_bit(tiny_toy_config, tmp_path):
    straight = _train(tiny_toy_config, tmp_path / "a")
    first = _train(tiny_toy_config, tmp_path / "b", steps=20)
    assert checkpoint.list_checkpoints(first)[-1].name == "ckpt-00000020"
    resumed = train(None, first, steps=40, resume=True, progress=False, log=lambda *_: None)
    for name in ("model", "ema"):
        a = load_file(str(checkpoint.list_checkpoints(straight)[-1] / f"{name}.safetensors"))
        b = load_file(str(checkpoint.list_checkpoints(resumed)[-1] / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    log_a = (straight / "log.csv").read_text().splitlines()
    log_b = (resumed / "log.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in log_a] == [r.split(",")[:2] for r in log_b]


def test_a_run_started_with_a_seed_resumes_as_the_readme_shows(tiny_toy_config, tmp_path):
    """README: `difflab train my_config.yaml --out runs/mine --steps 8000 --resume` continues a run started with
    --seed N; the run keeps its seed and ends where an uninterrupted --seed N run does. A --seed that differs
    from the run's is still refused, naming the flag."""
    from difflab.cli.main import main

    cfg = str(tiny_toy_config)
    assert main(["train", cfg, "--out", str(tmp_path / "straight"), "--seed", "11", "--no-progress"]) == 0
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--seed", "11", "--steps", "20", "--no-progress"]) == 0
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--steps", "40", "--resume", "--no-progress"]) == 0
    a = load_file(str(checkpoint.list_checkpoints(tmp_path / "straight")[-1] / "ema.safetensors"))
    b = load_file(str(checkpoint.list_checkpoints(tmp_path / "run")[-1] / "ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 11


def test_a_different_seed_on_resume_is_refused_naming_the_flag(tiny_toy_config, tmp_path, capsys):
    from difflab.cli.main import main

    cfg = str(tiny_toy_config)
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--seed", "11", "--steps", "10", "--no-progress"]) == 0
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--seed", "12", "--resume", "--no-progress"]) == 2
    assert "with --seed 12: the run was started with seed 11; leave --seed out when resuming" in capsys.readouterr().err
    with pytest.raises(DifflabError, match="with seed 12: the run was started with seed 11; leave seed out"):
        train(None, tmp_path / "run", seed=12, resume=True, progress=False, log=lambda *_: None)


def test_a_new_objective_is_one_function_and_one_registry_line(tiny_toy_config, tmp_path, monkeypatch):
    """docs/design.md's min-SNR sketch with γ = ∞ weights every example by SNR/SNR = 1 exactly, so the objective
    registered by one line trains the very weights L_simple does: the registry routes it through the one loop and
    the one preconditioning path, and the config accepts the new name."""
    from difflab import objectives, process
    from difflab.objectives import l_simple

    def min_snr_inf(denoiser, x0, t, eps, y=None, *, settings, **conditioning):
        snr = (process.alpha(denoiser.schedule, t, x0) / process.sigma(denoiser.schedule, t, x0)) ** 2
        return (snr.clamp(max=float("inf")) / snr).flatten() * l_simple(denoiser, x0, t=t, eps=eps, y=y, **conditioning)

    monkeypatch.setitem(objectives.LOSSES, "min-snr-inf", min_snr_inf)
    config = resolve(str(tiny_toy_config))
    simple = train(config, tmp_path / "simple", steps=10, progress=False, log=lambda *_: None)
    config["diffusion"]["loss"] = "min-snr-inf"
    new = train(resolve(config), tmp_path / "new", steps=10, progress=False, log=lambda *_: None)
    a = load_file(str(checkpoint.list_checkpoints(simple)[-1] / "model.safetensors"))
    b = load_file(str(checkpoint.list_checkpoints(new)[-1] / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setitem(objectives.LOSSES, "min-snr-inf", lambda *a, **k: 2 * min_snr_inf(*a, **k))  # and it is used
    twice = train(resolve(config), tmp_path / "twice", steps=10, progress=False, log=lambda *_: None)
    c = load_file(str(checkpoint.list_checkpoints(twice)[-1] / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_corrupt_checkpoint_falls_back_with_warning(tiny_toy_config, tmp_path):
    out = _train(tiny_toy_config, tmp_path / "run")
    newest = checkpoint.list_checkpoints(out)[-1]
    weights = newest / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.warns(UserWarning, match="ema.safetensors"):
        run = difflab.load(out)
    assert run.step == 30
    for ckpt in checkpoint.list_checkpoints(out)[:-1]:
        (ckpt / "model.safetensors").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DifflabError, match="no valid checkpoint"):
            difflab.load(out)


def test_missing_or_wrong_run_directory(tmp_path):
    with pytest.raises(DifflabError, match="does not exist"):
        difflab.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DifflabError, match="is neither a difflab run"):
        difflab.load(tmp_path / "empty")


def test_refuses_to_overwrite_a_run(tiny_toy_config, tmp_path):
    out = _train(tiny_toy_config, tmp_path / "run", steps=10)
    with pytest.raises(DifflabError, match="already holds a run"):
        _train(tiny_toy_config, out, steps=10)


def test_image_run_end_to_end(tiny_digits_config, tmp_path):
    out = _train(tiny_digits_config, tmp_path / "digits")
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    run = difflab.load(out)
    x = run.sample(3, steps=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 8, 8) and x.min() >= 0 and x.max() <= 1


def test_bad_data_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    cfg = {"data": {"name": "folder", "root": str(folder)},
           "model": {"type": "unet", "in_channels": 1, "image_size": 8, "channel_mult": [1, 2], "attention_resolutions": []}}
    with pytest.raises(DifflabError, match="broken.png"):
        train(resolve(cfg), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_run_saved_before_a_model_key_existed_resumes(tiny_digits_config, tmp_path):
    """A run whose config.json predates a model key (here the U-Net's cross-attention keys, added later) resumes
    with the same preset: the missing key reads as its default instead of as a changed config."""
    first = _train(tiny_digits_config, tmp_path / "old", steps=3)
    cfg = json.loads((first / "config.json").read_text())
    for key in ("context_dim", "cross_attention_resolutions"):
        assert key in cfg["model"]
        del cfg["model"][key]
    (first / "config.json").write_text(json.dumps(cfg))
    resumed = train(resolve(str(tiny_digits_config)), first, steps=6, resume=True, progress=False, log=lambda *_: None)
    assert checkpoint.list_checkpoints(resumed)[-1].name == "ckpt-00000006"
    changed = resolve(str(tiny_digits_config))
    changed["model"]["base_channels"] = 8
    with pytest.raises(DifflabError, match="model.base_channels"):  # a real change is still refused
        train(changed, first, steps=9, resume=True, progress=False, log=lambda *_: None)
