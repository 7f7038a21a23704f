"""difflab eval: scores named by their extractor, ordered as they must be on known sets, and bad input."""

import json

import numpy as np
import pytest
import torch

from difflab.cli.main import main
from difflab.data import load_dataset
from difflab.errors import DifflabError
from difflab.evaluate import evaluate_samples


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


def test_cli_eval_samples_file_writes_json_and_caches_reference(tmp_path, capsys):
    x = load_dataset("digits").data[:120].numpy()
    np.savez(tmp_path / "s.npz", samples=x)
    out = tmp_path / "scores.json"
    assert main(["eval", "--samples", str(tmp_path / "s.npz"), "--ref", "digits", "--metrics", "fd,pr", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert set(scores) >= {"FD[digits-classifier]", "precision[digits-classifier]", "recall[digits-classifier]"}
    assert "KID[digits-classifier]" not in scores
    assert list((tmp_path / "cache").glob("ref-digits-digits-classifier-120.npz"))
    assert "FD[digits-classifier]" in capsys.readouterr().out


def test_cli_eval_bad_input(tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", samples=np.zeros((10, 1, 28, 28), dtype=np.float32))
    np.savez(tmp_path / "nokey.npz", other=np.zeros(3))
    cases = [(["eval", "--samples", str(tmp_path / "wrong.npz"), "--ref", "digits"], "shape"),
             (["eval", "--samples", str(tmp_path / "nokey.npz"), "--ref", "digits"], "array 'samples'"),
             (["eval", "--samples", str(tmp_path / "none.npz"), "--ref", "digits"], "does not exist"),
             (["eval", "--samples", str(tmp_path / "wrong.npz")], "--ref"),
             (["eval", "--samples", str(tmp_path / "wrong.npz"), "--ref", "digits", "--metrics", "fid"], "unknown metric"),
             (["eval"], "either a run")]
    for args, message in cases:
        assert main(args) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(DifflabError, match="no judge"):
        evaluate_samples(torch.rand(10, 3, 32, 32), "cifar10")


def test_inception_weights_name_the_score_fid(tmp_path):
    """With the (here random) FID InceptionV3 weights the distance is reported as FID; a missing file is refused."""
    from safetensors.torch import save_file

    from difflab.metrics.inception import InceptionV3

    torch.manual_seed(0)
    net = InceptionV3()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "inc.safetensors"))
    x = load_dataset("digits").data[:4]
    s = evaluate_samples(x, "digits", metrics="fd", num_ref=4, inception_weights=tmp_path / "inc.safetensors")
    assert s["extractor"] == "inception-v3" and "FID" in s and not any(k.startswith("FD[") for k in s)
    with pytest.raises(DifflabError):
        evaluate_samples(x, "digits", metrics="fd", num_ref=4, inception_weights=tmp_path / "missing.pth")
