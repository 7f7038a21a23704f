"""The noise on a score, and verdicts that respect it.

A score such as the Fréchet distance (FD) of N samples is itself random: two sets of *real* images differ by a
real-vs-real "floor" that shrinks as N grows, and a model's score moves with the samples drawn and the training seed.
A claim "B beats A" is accepted only when the difference stands clear of that noise:

* :func:`real_floor` — the score of two disjoint random subsets of n real feature vectors, repeated: its mean is the
  floor at this n and feature extractor, its spread the smallest difference worth reading.
* :func:`bootstrap_interval` — a bootstrap interval of a score between two sets (Efron & Tibshirani 1993,
  "An Introduction to the Bootstrap", Ch. 13 percentile interval, shifted by the Ch. 10 bias estimate), resampling
  each set with replacement. The shift matters: a resample repeats points, which shrinks its covariance and moves
  the FD up by about as much as the FD's whole spread (in 128-d features at N = 450, the plain percentile interval
  of real-vs-real digits does not even contain the score), so the interval is moved back by mean(resampled) − score
  and then describes the spread of the score at this N, the quantity the floor is compared with.
* :func:`difference_interval` — the same for score(b, ref) − score(a, ref), the three sets resampled together
  (paired through the shared reference).
* :func:`seed_interval` — a Student-t interval of a mean over training seeds.
* :func:`verdict` — the rule that turns an interval of an effect into "agrees", "disagrees" or "not resolved at this
  scale" against the direction a paper claims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DifflabError

Tensor = torch.Tensor
AGREES, DISAGREES, NOT_RESOLVED = "agrees", "disagrees", "not resolved at this scale"


def _fd(a: Tensor, b: Tensor) -> float:
    from .frechet import frechet_distance_of

    return frechet_distance_of(a, b)


@dataclass(frozen=True)
class Floor:
    """Real-vs-real scores of two disjoint subsets of ``n`` real examples, ``len(values)`` repeats."""

    n: int
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float:
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / max(1, len(self.values) - 1))

    def range(self, level: float = 0.95) -> tuple[float, float]:
        """The empirical central ``level`` range of the repeats."""
        v = torch.tensor(self.values, dtype=torch.float64)
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        lo, hi = torch.quantile(v, q).tolist()
        return lo, hi


def _check_features(x, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DifflabError(f"{what} must be a (N, D) tensor of feature vectors with N >= 2, got {shape}.")
    if not bool(torch.isfinite(x).all()):
        raise DifflabError(f"{what} hold NaN or infinite values.")
    return x.double()


def _check_count(value, name: str, lo: int = 1) -> int:
    from ..checks import check_integer

    check_integer(value, name, lo)
    return value


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise DifflabError(f"the interval level must be a number strictly between 0 and 1, got {level!r}.")
    return float(level)


def real_floor(features: Tensor, n: int, repeats: int = 10, generator: torch.Generator | None = None,
               metric: Callable[[Tensor, Tensor], float] = _fd) -> Floor:
    """The real-vs-real floor: ``metric`` between two disjoint random subsets of ``n`` rows of ``features`` (one pool
    of real examples' features), ``repeats`` times with fresh subsets."""
    x = _check_features(features, "the real features")
    n, repeats = _check_count(n, "n", 2), _check_count(repeats, "repeats", 2)
    if 2 * n > x.shape[0]:
        raise DifflabError(f"a floor at n = {n} needs 2n = {2 * n} real examples; the pool has {x.shape[0]}.")
    values = []
    for _ in range(repeats):
        perm = torch.randperm(x.shape[0], generator=generator)
        values.append(float(metric(x[perm[:n]], x[perm[n:2 * n]])))
    return Floor(n, tuple(values))


def _percentile(values: Tensor, level: float) -> tuple[float, float]:
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(values.double(), q).tolist()
    return lo, hi


def _shifted_percentile(score: float, draws: Tensor, level: float) -> tuple[float, float, float]:
    """(score, low, high): the percentile interval of the bootstrap ``draws`` moved by the bias estimate
    mean(draws) − score (Efron & Tibshirani 1993, Eq. 10.2)."""
    lo, hi = _percentile(draws, level)
    bias = float(draws.double().mean()) - score
    return score, lo - bias, hi - bias


def bootstrap_interval(a: Tensor, b: Tensor, metric: Callable[[Tensor, Tensor], float] = _fd,
                       num_resamples: int = 200, level: float = 0.95,
                       generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """(score, low, high): ``metric(a, b)`` and its bootstrap interval at ``level``, each set resampled with
    replacement ``num_resamples`` times; the percentile interval is shifted by the bootstrap's bias estimate
    (module docstring), so it is centred on the score."""
    a, b = _check_features(a, "the first features"), _check_features(b, "the second features")
    num_resamples, level = _check_count(num_resamples, "num_resamples", 10), _check_level(level)
    draws = []
    for _ in range(num_resamples):
        ia = torch.randint(0, a.shape[0], (a.shape[0],), generator=generator)
        ib = torch.randint(0, b.shape[0], (b.shape[0],), generator=generator)
        draws.append(float(metric(a[ia], b[ib])))
    return _shifted_percentile(float(metric(a, b)), torch.tensor(draws), level)


def difference_interval(a: Tensor, b: Tensor, reference: Tensor, metric: Callable[[Tensor, Tensor], float] = _fd,
                        num_resamples: int = 200, level: float = 0.95,
                        generator: torch.Generator | None = None) -> tuple[float, float, float]:
    """(d, low, high) for d = metric(b, ref) − metric(a, ref): the effect of going from A to B, with a bootstrap
    interval (shifted percentile, as :func:`bootstrap_interval`) in which a, b and the shared reference are
    resampled together."""
    a, b = _check_features(a, "the first model's features"), _check_features(b, "the second model's features")
    ref = _check_features(reference, "the reference features")
    num_resamples, level = _check_count(num_resamples, "num_resamples", 10), _check_level(level)
    draws = []
    for _ in range(num_resamples):
        ia = torch.randint(0, a.shape[0], (a.shape[0],), generator=generator)
        ib = torch.randint(0, b.shape[0], (b.shape[0],), generator=generator)
        ir = torch.randint(0, ref.shape[0], (ref.shape[0],), generator=generator)
        draws.append(float(metric(b[ib], ref[ir])) - float(metric(a[ia], ref[ir])))
    return _shifted_percentile(float(metric(b, ref)) - float(metric(a, ref)), torch.tensor(draws), level)


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval mean ± t_{(1+level)/2, k−1} · s/√k of a score over k >= 2 training
    seeds."""
    from scipy.stats import t as student_t

    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 2:
        raise DifflabError(f"an interval over training seeds needs at least 2 seeds, got {v.numel()}.")
    if not bool(torch.isfinite(v).all()):
        raise DifflabError("the per-seed values hold NaN or infinite values.")
    level = _check_level(level)
    k, mean, sd = v.numel(), float(v.mean()), float(v.std())
    half = float(student_t.ppf((1 + level) / 2, k - 1)) * sd / math.sqrt(k)
    return mean, mean - half, mean + half


def verdict(low: float, high: float, claimed: str, margin: float = 0.0) -> str:
    """The rule: the effect d (B's score minus A's) has the interval [``low``, ``high``]; the paper claims d is
    ``"negative"`` or ``"positive"``; ``margin`` >= 0 is the smallest effect that counts (the real-vs-real floor's
    spread at the same N and feature extractor, e.g. two of its standard deviations).

    * "agrees" — the whole interval lies beyond the margin on the claimed side;
    * "disagrees" — the whole interval lies beyond the margin on the other side;
    * "not resolved at this scale" — otherwise: the effect is inside the noise, whatever its point estimate says.
    """
    for name, v in (("low", low), ("high", high), ("margin", margin)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DifflabError(f"the verdict's {name} must be a finite number, got {v!r}.")
    if low > high:
        raise DifflabError(f"the interval is empty: low {low} > high {high}.")
    if margin < 0:
        raise DifflabError(f"the margin must be >= 0, got {margin}.")
    if claimed not in ("negative", "positive"):
        raise DifflabError(f"the claimed direction must be 'negative' or 'positive', got {claimed!r}.")
    if high < -margin:
        return AGREES if claimed == "negative" else DISAGREES
    if low > margin:
        return AGREES if claimed == "positive" else DISAGREES
    return NOT_RESOLVED
