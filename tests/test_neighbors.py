"""Nearest training images and the memorization rate: nearest() against a brute-force float64 search, the rate
against constructed distances, and `difflab neighbors` on exact copies (all flagged, each beside itself) and on
held-out digits (flagged no more often than the floor)."""

from __future__ import annotations

import json

import pytest
import torch

from difflab.cli.main import main
from difflab.data import load_dataset
from difflab.errors import DifflabError
from difflab.metrics.memorization import memorization_rate, nearest


def test_nearest_matches_a_brute_force_search():
    g = torch.Generator().manual_seed(0)
    q, pool = torch.randn(37, 5, generator=g), torch.randn(300, 5, generator=g)
    d, i = nearest(q, pool, k=4, chunk=8)
    for r in range(len(q)):
        all_d = [float(((q[r].double() - pool[j].double()) ** 2).sum().sqrt()) for j in range(len(pool))]
        order = sorted(range(len(pool)), key=all_d.__getitem__)[:4]
        assert i[r].tolist() == order
        assert d[r].tolist() == pytest.approx([all_d[j] for j in order], rel=1e-12)
    with pytest.raises(DifflabError, match="k must be an integer from 1 to the pool's 300 rows"):
        nearest(q, pool, k=301)
    with pytest.raises(DifflabError, match="5 values per row but the pool has 4"):
        nearest(q, pool[:, :4])


def test_memorization_rate_on_constructed_distances():
    heldout = torch.tensor([3.0, 3.0, 3.0, 0.5, 6.0])  # median 3 -> threshold 1
    m = memorization_rate(torch.tensor([0.2, 0.99, 1.01, 5.0]), heldout)
    assert m.threshold == pytest.approx(1.0) and m.heldout_median == 3.0
    assert m.memorized.tolist() == [True, True, False, False] and m.rate == 0.5
    assert m.floor == pytest.approx(0.2)  # the held-out 0.5 is itself under the threshold
    with pytest.raises(DifflabError, match="strictly between 0 and 1"):
        memorization_rate(torch.ones(3), heldout, ratio=1.5)


@pytest.fixture
def digits_run(tmp_path, tiny_digits_config):
    assert main(["train", str(tiny_digits_config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    return tmp_path / "run"


def test_copies_are_flagged_and_held_out_digits_are_not(digits_run):
    from difflab.run import load
    from difflab.tasks import neighbors

    run = load(digits_run)
    train = load_dataset("digits", num=64).data  # the tiny config trains on the first 64 train digits
    copies = (train[:10] + 0.01 * torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    res = neighbors.find(run, 10, k=2, samples=copies)
    assert [s.name for s in res.spaces] == ["pixels", "digits-classifier features"]
    pixels = res.spaces[0]
    assert pixels.indices[:, 0].tolist() == list(range(10))  # each copy's nearest training image is its original
    assert pixels.memorization.rate == 1.0 and torch.equal(res.train, train)
    test = load_dataset("digits", split="test").data
    fresh = neighbors.find(run, 200, k=1, samples=test[:200])
    for s in fresh.spaces:  # unseen real digits are copies no more often than the held-out floor says
        assert s.memorization.rate <= s.memorization.floor + 0.02


def test_cli_neighbors_writes_picture_and_json(digits_run, tmp_path, capsys):
    out, js = tmp_path / "nb.png", tmp_path / "nb.json"
    assert main(["neighbors", str(digits_run), "--num", "12", "--steps", "3", "--out", str(out), "--json", str(js),
                 "--no-progress"]) == 0
    assert out.stat().st_size > 1000
    body = json.loads(js.read_text())
    assert body["num_samples"] == 12 and body["num_train"] == 64 and body["num_heldout"] == 450
    assert 0 <= body["pixels"]["memorization_rate"] <= 1 and "memorized" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--out", "x.jpg"], "must end in .png"),
    (["--k", "0"], "--k must be a positive integer"),
    (["--json", "x.txt"], "must end in .json"),
    (["--k", "65", "--num", "2", "--steps", "2"], "the run trained on 64 images"),
])
def test_cli_neighbors_bad_input(digits_run, tmp_path, capsys, args, message):
    argv = ["neighbors", str(digits_run), "--no-progress", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "nb.png")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "nb.png").exists()
