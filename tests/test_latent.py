"""Latent diffusion: the scale factor against a float64 recomputation, a tiny autoencoder + latent text
diffusion run end to end (training, resume refusal, guidance unchanged in latent space, prompts from the
CLI), and the one-sentence refusals (bad prompts, an autoencoder that does not match the run)."""

import json
import shutil

import numpy as np
import pytest
import torch

from difflab.cli.main import main
from difflab.errors import DifflabError
from difflab.latent import LatentCodec, scale_factor

PROMPT = "a seven on the left and a two on the right"


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_scale_factor_is_one_over_the_standard_deviation():
    g = torch.Generator().manual_seed(0)
    z = 3.0 * torch.randn(20, 4, 2, 3, generator=g) + 0.5
    want = 1.0 / np.std(z.double().numpy().ravel(), ddof=1)
    assert scale_factor(z) == pytest.approx(want, rel=1e-12)
    with pytest.raises(DifflabError, match="constant latents"):
        scale_factor(torch.ones(4, 2))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny KL autoencoder and a tiny latent text-unet trained on its latents (a few steps each)."""
    from difflab import config as config_mod
    from difflab.training.autoencoder import resolve, train_autoencoder
    from difflab.training.diffusion import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("latent")
    ae = root / "ae"
    train_autoencoder(resolve({"preset": "mnist-pairs-kl", "model": {"channels": 8}, "data": {"num": 64},
                               "train": {"steps": 3, "batch_size": 8, "log_every": 1, "save_every": 0, "eval_num": 16}}),
                      ae, progress=False, log=lambda *a: None)
    cfg = {"data": {"name": "mnist-pairs", "num": 64}, "latent": {"autoencoder": str(ae)},
           "model": {"type": "text-unet", "in_channels": 4, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                     "num_res_blocks": 1, "attention_resolutions": [], "cross_attention_resolutions": [8, 4], "groups": 4,
                     "text_width": 8, "text_layers": 1, "text_heads": 2, "dropout": 0.0},
           "diffusion": {"schedule": "cosine", "T": 50},
           "train": {"steps": 3, "batch_size": 8, "log_every": 1, "save_every": 0, "sample_every": 0, "num_samples": 2,
                     "label_dropout": 0.5},
           "sample": {"steps": 3, "clip": True}}
    ldm = root / "ldm"
    train(config_mod.resolve(cfg), ldm, progress=False, log=lambda *a: None)
    return {"ae": ae, "ldm": ldm, "config": cfg}


def test_run_records_the_scale_factor_measured_on_the_data(runs):
    from difflab.data import load_dataset
    from difflab.saved import load_autoencoder

    asked = json.loads((runs["ldm"] / "config.json").read_text())
    assert asked["latent"].get("scale_factor") is None  # measured by training: in the run's record, not its config
    saved = json.loads((runs["ldm"] / "record.json").read_text())
    ae = load_autoencoder(runs["ae"])
    x = load_dataset("mnist-pairs", num=64, seed=0).data * 2 - 1
    with torch.no_grad():
        z = ae.model.moments(x)[0].double().numpy()  # the KL posterior's mean, recomputed
    s = 1.0 / np.std(z.ravel(), ddof=1)
    assert saved["latent"]["scale_factor"] == pytest.approx(s, rel=1e-5)
    assert saved["latent"]["shape"] == [4, 8, 16]
    assert saved["latent"]["clip"] == pytest.approx(np.abs(s * z).max(), rel=1e-5)  # the data's largest |latent|
    assert (runs["ldm"] / "samples").is_dir() and list((runs["ldm"] / "samples").glob("*.png"))


def test_codec_round_trips_the_scale(runs):
    from difflab.saved import load_autoencoder

    ae = load_autoencoder(runs["ae"])
    x = torch.rand(3, 1, 28, 56) * 2 - 1
    codec = LatentCodec(ae, 2.5)
    z = codec.encode(x)
    assert torch.allclose(z, 2.5 * ae.model.encode(x), atol=1e-6)
    assert torch.allclose(codec.decode(z), ae.model.decode(z / 2.5), atol=1e-6)


def test_sampling_with_prompts_decodes_to_images(runs):
    from difflab.run import load

    run = load(runs["ldm"])
    assert run.codec is not None and run.codec.shape == (4, 8, 16)
    c = run.config["latent"]["clip"]
    assert run.denoiser.clip_x0 == (-c, c)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    x = run.sample(2, steps=3, generator=gens, prompts=PROMPT, guidance="cfg", scale=3.0)
    assert x.shape == (2, 1, 28, 56) and float(x.min()) >= 0 and float(x.max()) <= 1
    # per-sample seeds: sample 1 alone is sample 1 of the batch
    alone = run.sample(1, steps=3, generator=[torch.Generator().manual_seed(1)], prompts=PROMPT, guidance="cfg", scale=3.0)
    assert torch.allclose(alone[0], x[1], atol=1e-5)


def test_cfg_on_prompts_is_the_guided_combination(runs):
    """Guidance works unchanged in latent space: ε̃ = (1 + w) ε(z, c) − w ε(z, ∅), ∅ the empty prompt."""
    from difflab.guidance import ClassifierFreeGuidance
    from difflab.run import load

    run = load(runs["ldm"])
    for p in run.model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    ids = run.model.tokenizer.batch([PROMPT, "an eight on the left and a one on the right"])
    z, t = torch.randn(2, 4, 8, 16), torch.tensor([10, 30])
    guided = ClassifierFreeGuidance(run.denoiser, [ids], 2.0)(z, t)
    with torch.no_grad():
        eps_c = run.denoiser.predict(z, t, ids).eps
        eps_u = run.denoiser.predict(z, t, torch.zeros_like(ids)).eps
    assert torch.allclose(guided.eps, 3.0 * eps_c - 2.0 * eps_u, atol=1e-5)


def test_cli_prompt_and_bad_prompts(runs, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["sample", str(runs["ldm"]), "--prompt", PROMPT, "--scale", "3", "--num", "2", "--steps", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert out.is_file()
    for prompt, message in (("", "the prompt is empty"), ("a seven on the left and a dog on the right", "unknown word 'dog'"),
                            (PROMPT + " and a one on the right", "17 words but the model reads at most 12")):
        assert main(["sample", str(runs["ldm"]), "--prompt", prompt, "--num", "1", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["sample", str(runs["ldm"]), "--prompt", PROMPT, "--guidance", "classifier", "--classifier", str(tmp_path),
                 "--num", "1", "--out", str(out)]) == 2


def test_autoencoder_that_does_not_match_the_run_is_refused(runs, tmp_path):
    from difflab.run import load

    other = tmp_path / "ae-other"
    shutil.copytree(runs["ae"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["name"] = "mnist"
    (other / "config.json").write_text(json.dumps(cfg))
    run_dir = tmp_path / "ldm"
    shutil.copytree(runs["ldm"], run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["latent"]["autoencoder"] = str(other)
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(DifflabError, match="was trained on 'mnist' but the diffusion run uses 'mnist-pairs'"):
        load(run_dir)
    saved["latent"]["autoencoder"] = str(runs["ae"])
    (run_dir / "config.json").write_text(json.dumps(saved))
    record = json.loads((run_dir / "record.json").read_text())
    record["latent"]["shape"] = [4, 7, 14]  # the latent shape the run was trained on is in its record
    (run_dir / "record.json").write_text(json.dumps(record))
    with pytest.raises(DifflabError, match=r"latents of shape \(4, 7, 14\)"):
        load(run_dir)
    saved["latent"]["autoencoder"] = str(tmp_path / "missing")
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(DifflabError, match="does not exist"):
        load(run_dir)
    not_ae = tmp_path / "ldm2"
    shutil.copytree(runs["ldm"], not_ae)
    saved["latent"]["autoencoder"] = str(runs["ldm"])  # a diffusion run is no autoencoder
    (not_ae / "config.json").write_text(json.dumps(saved))
    with pytest.raises(DifflabError, match="is not an autoencoder run"):
        load(not_ae)


def test_text_unet_needs_captions_and_config_errors(runs, tmp_path):
    from difflab import config as config_mod
    from difflab.training.diffusion import train

    cfg = {**runs["config"], "data": {"name": "mnist", "num": 64}}
    cfg.pop("latent")
    cfg["model"] = {**cfg["model"], "in_channels": 1, "image_size": 28, "channel_mult": [1, 2], "cross_attention_resolutions": [14]}
    with pytest.raises(DifflabError, match="has none; use a captioned dataset"):
        train(config_mod.resolve(cfg), tmp_path / "x", progress=False, log=lambda *a: None)
    with pytest.raises(DifflabError, match="latent.autoencoder must name"):
        config_mod.resolve({**runs["config"], "latent": {"autoencoder": ""}})
    with pytest.raises(DifflabError, match="unknown config key 'latent.scale'"):
        config_mod.resolve({**runs["config"], "latent": {"autoencoder": "x", "scale": 1}})


def test_resume_keeps_the_measured_scale(runs, tmp_path):
    from difflab import config as config_mod
    from difflab.training.diffusion import train

    run_dir = tmp_path / "ldm"
    shutil.copytree(runs["ldm"], run_dir)
    before = json.loads((run_dir / "config.json").read_text())["latent"]
    train(config_mod.resolve(runs["config"]), run_dir, steps=4, resume=True, progress=False, log=lambda *a: None)
    assert json.loads((run_dir / "config.json").read_text())["latent"] == before


def test_autoencoder_training_writes_eval_and_refuses_other_runs(runs, tmp_path):
    from difflab.training.autoencoder import resolve, train_autoencoder

    result = json.loads((runs["ae"] / "eval.json").read_text())
    assert result["num"] == 16 and np.isfinite(result["psnr_db"]) and "FD[mnist-classifier]" in result
    with pytest.raises(DifflabError, match="is not an autoencoder run"):
        train_autoencoder(None, runs["ldm"], resume=True, progress=False, log=lambda *a: None)
    with pytest.raises(DifflabError, match="already holds a run"):
        train_autoencoder(resolve("mnist-pairs-vq"), runs["ae"], progress=False, log=lambda *a: None)
