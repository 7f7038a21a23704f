"""The noise on scores and the verdict rule: constructed intervals, Gaussian features with a closed-form Fréchet
distance, and a float64 recomputation of the Student-t interval."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.errors import DifflabError
from difflab.metrics.intervals import (AGREES, DISAGREES, NOT_RESOLVED, bootstrap_interval, difference_interval,
                                       real_floor, seed_interval, verdict)


@pytest.mark.parametrize("low,high,claimed,margin,expected", [
    (-5.0, -3.0, "negative", 1.0, AGREES),         # clear of the noise on the claimed side
    (-5.0, -0.5, "negative", 1.0, NOT_RESOLVED),   # reaches into the noise band
    (-5.0, 0.5, "negative", 0.0, NOT_RESOLVED),    # straddles zero
    (-1.5, -0.5, "negative", 1.0, NOT_RESOLVED),   # beyond zero but not beyond the floor
    (-1.5, -1.2, "negative", 1.0, AGREES),
    (2.0, 4.0, "negative", 1.0, DISAGREES),        # clear on the other side
    (2.0, 4.0, "positive", 1.0, AGREES),
    (-4.0, -2.0, "positive", 1.0, DISAGREES),
    (0.2, 0.9, "positive", 1.0, NOT_RESOLVED),     # a "win" smaller than two real sets differ by
    (3.0, 3.0, "positive", 0.0, AGREES),
])
def test_verdict_rule_on_constructed_intervals(low, high, claimed, margin, expected):
    assert verdict(low, high, claimed, margin) == expected


@pytest.mark.parametrize("args,match", [
    ((2.0, 1.0, "negative"), "interval is empty"),
    ((float("nan"), 1.0, "negative"), "finite number"),
    ((0.0, 1.0, "lower"), "'negative' or 'positive'"),
    ((0.0, 1.0, "negative", -1.0), "margin must be >= 0"),
])
def test_verdict_refuses_nonsense(args, match):
    with pytest.raises(DifflabError, match=match):
        verdict(*args)


def test_bootstrap_interval_covers_the_closed_form_fd():
    """N(μ_a, I) vs N(μ_b, I) in 4-D: FD = ‖μ_a − μ_b‖² = 4 exactly; the bootstrap interval from 3,000 samples each
    contains it and is narrow, and a difference interval sees B move towards the reference."""
    g = torch.Generator().manual_seed(0)
    d = 4
    a = torch.randn(3000, d, generator=g, dtype=torch.float64)
    b = torch.randn(3000, d, generator=g, dtype=torch.float64) + torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    score, lo, hi = bootstrap_interval(a, b, num_resamples=200, generator=g)
    assert lo < 4.0 < hi and hi - lo < 0.8 and lo <= score <= hi
    ref = torch.randn(3000, d, generator=g, dtype=torch.float64)
    closer = torch.randn(3000, d, generator=g, dtype=torch.float64) + 0.3  # FD to ref 0.36 against a's ~0
    effect, lo, hi = difference_interval(a, closer, ref, num_resamples=100, generator=g)
    assert 0.36 - 0.15 < effect < 0.36 + 0.15 and lo > 0.1 and verdict(lo, hi, "positive", 0.05) == AGREES


def test_real_floor_uses_disjoint_subsets_and_shrinks_with_n():
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(8000, 6, generator=g, dtype=torch.float64)
    small, large = real_floor(pool, 200, repeats=12, generator=g), real_floor(pool, 2000, repeats=12, generator=g)
    assert all(v > 0 for v in small.values) and len(small.values) == 12
    assert 5 < small.mean / large.mean < 20  # the floor is O(1/n): ~10 × for 10 × the samples
    lo, hi = small.range()
    assert lo <= small.mean <= hi and small.sd > 0
    seen = []
    real_floor(pool[:100], 50, repeats=3, generator=g, metric=lambda x, y: seen.append((x, y)) or 0.0)
    for x, y in seen:  # two halves of a 100-row pool of distinct rows share no row
        assert not (x[:, None, :] == y[None, :, :]).all(-1).any()
    with pytest.raises(DifflabError, match="needs 2n = 200 real examples; the pool has 100"):
        real_floor(pool[:100], 100)


def test_seed_interval_is_student_t():
    values = [4.1, 5.0, 4.4]
    mean, lo, hi = seed_interval(values)
    s = math.sqrt(sum((v - sum(values) / 3) ** 2 for v in values) / 2)
    t975_df2 = 4.302652729911275  # Student t quantile, 2 degrees of freedom (tables)
    assert mean == pytest.approx(sum(values) / 3)
    assert hi - mean == pytest.approx(t975_df2 * s / math.sqrt(3), rel=1e-9) and mean - lo == pytest.approx(hi - mean)
    with pytest.raises(DifflabError, match="at least 2 seeds"):
        seed_interval([1.0])


def test_bootstrap_interval_covers_the_expected_score_at_this_n_in_high_dimension():
    """In 32-d at N = 300 a resample's repeated points push the FD up by about its whole spread; the shifted
    interval must still cover E[FD_N] (Monte Carlo over fresh draws) in most trials, where the plain percentile
    interval would miss it (its resamples sit above the score). Two Gaussians whose population FD is ‖Δμ‖² = 1."""
    g = torch.Generator().manual_seed(3)
    d, n = 32, 300
    shift = torch.full((d,), (1.0 / d) ** 0.5, dtype=torch.float64)

    def pair():
        return (torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, d, generator=g, dtype=torch.float64) + shift)

    from difflab.metrics.frechet import frechet_distance_of

    expected = sum(frechet_distance_of(*pair()) for _ in range(150)) / 150
    assert expected > 1.5  # the finite-N bias is large here: the test is about it
    covered = 0
    for _ in range(30):
        a, b = pair()
        score, lo, hi = bootstrap_interval(a, b, num_resamples=60, generator=g)
        covered += lo <= expected <= hi
        assert lo <= score <= hi
    assert covered >= 24, f"the 95% interval covered E[FD_N] in {covered} of 30 trials"
