"""Precision and recall (Kynkäänniemi et al. 2019) on point sets whose answers are known."""

import pytest
import torch

from difflab.errors import DifflabError
from difflab.metrics.precision_recall import knn_radii, precision_recall


def test_knn_radius_on_a_line():
    x = torch.arange(10.0)[:, None]  # neighbours at distance 1, 1, 2, 2, ...
    r = knn_radii(x, k=2)
    assert r[5].item() == 1.0 and r[0].item() == 2.0  # point 0: neighbours 1, 2


def test_identical_sets_score_one_and_disjoint_sets_zero():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 4, generator=g)
    assert precision_recall(a, a.clone()) == {"precision": 1.0, "recall": 1.0, "k": 5}
    far = a + 100.0
    assert precision_recall(a, far) == {"precision": 0.0, "recall": 0.0, "k": 5}


def test_mode_dropping_lowers_recall_not_precision():
    # real: two clusters; generated: only the first. Every generated point is realistic
    # (precision 1) but the second cluster is never covered (recall ≈ 1/2).
    g = torch.Generator().manual_seed(1)
    c1, c2 = torch.randn(400, 2, generator=g) * 0.1, torch.randn(400, 2, generator=g) * 0.1 + 10
    fake = torch.randn(400, 2, generator=g) * 0.1
    r = precision_recall(torch.cat([c1, c2]), fake)
    assert r["precision"] > 0.97
    assert abs(r["recall"] - 0.5) < 0.03


def test_counts_exactly_which_points_are_inside():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii: 1 each
    fake = torch.tensor([[0.5], [3.9], [4.5], [10.0]])  # inside, inside, outside, outside
    r = precision_recall(real, fake, k=1)
    assert r["precision"] == 0.5
    # fake k=1 radii: 0.5 -> 3.4, 3.9 -> 0.6, 4.5 -> 0.6, 10 -> 5.5; real 0,1,2,3: 0 (|0-0.5|=.5<=3.4) in,
    # 1 in (0.5 <= 3.4), 2 in (1.5 <= 3.4), 3 in (0.9 <= 3.4 and 0.9 > 0.6)
    assert r["recall"] == 1.0


def test_bad_input():
    a = torch.randn(10, 3)
    with pytest.raises(DifflabError, match="differ in width"):
        precision_recall(a, torch.randn(10, 4))
    with pytest.raises(DifflabError, match="need more than k"):
        precision_recall(a, torch.randn(5, 3))
    with pytest.raises(DifflabError, match="2-D"):
        precision_recall(a[0], a)
