"""difflab.metrics.failures: the failed-sample share (judge unsure, or a brightness no real image has) and its interval."""

import pytest
import torch
from scipy.stats import binomtest

from difflab.data import load_dataset
from difflab.errors import DifflabError
from difflab.metrics.failures import CONFIDENCE, failed, failed_share, intensity_range, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 50), (3, 100), (50, 100), (97, 100), (100, 100), (1, 2000)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_intensity_range_is_the_percentiles_of_the_training_means():
    train = load_dataset("digits", split="train").data
    means = train.flatten(1).double().mean(1).sort().values
    lo, hi = intensity_range("digits")
    n = len(means)
    assert means[0] <= lo <= means[int(0.01 * n)] and means[int(0.99 * n)] <= hi <= means[-1]
    assert (means < lo).sum() <= 0.002 * n + 1 and (means > hi).sum() <= 0.002 * n + 1


def test_real_held_out_images_rarely_fail_and_slabs_and_noise_always_do():
    real = load_dataset("digits", split="test").data
    share = failed_share(real, "digits")
    assert share["failed"] < 0.05 and share["failed 95% low"] <= share["failed"] <= share["failed 95% high"]
    grey = torch.full((40, 1, 8, 8), 0.8)  # a bright slab: brighter than any real digit
    assert failed(grey, "digits")["brightness"].all() and failed(grey, "digits")["failed"].all()
    noise = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = failed(noise, "digits")
    assert masks["failed"].float().mean() > 0.9
    assert torch.equal(masks["failed"], masks["unsure"] | masks["brightness"])


def test_a_sample_the_judge_doubts_fails_even_at_a_real_brightness():
    from difflab.metrics.classifiers import judge

    real = load_dataset("digits", split="test").data[:200]
    mixed = 0.5 * real + 0.5 * real.roll(7, dims=0)  # two digits on top of each other, a real mean brightness
    _, conf = judge(mixed, "digits")
    masks = failed(mixed, "digits")
    assert torch.equal(masks["unsure"], conf < CONFIDENCE) and masks["unsure"].any()


def test_bad_counts_are_refused():
    with pytest.raises(DifflabError, match="0 <= failures <= n"):
        wilson_interval(5, 3)


def test_eval_refuses_the_failed_share_on_canvases(tmp_path, capsys):
    import numpy as np

    from difflab.cli.main import main

    np.savez(tmp_path / "x.npz", samples=np.zeros((4, 1, 28, 56), dtype=np.float32))
    assert main(["eval", "--samples", str(tmp_path / "x.npz"), "--ref", "mnist-pairs", "--metrics", "fd,failed"]) == 2
    assert "judge of whole images" in capsys.readouterr().err
