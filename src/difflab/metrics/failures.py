"""Failed samples: the blobs a user sees first, counted.

A sample *fails* when the dataset's judge cannot name a class with confidence ≥ 0.5 (:data:`CONFIDENCE`), or when
its mean intensity lies outside the range of the real images' mean intensities (their 0.1 and 99.9 percentiles,
:data:`PERCENTILES`, over the training split). The first catches shapes that are no digit or garment; the second
catches grey or white slabs a confident judge may still name. The share comes with a Wilson score interval
(Wilson 1927, "Probable inference, the law of succession, and statistical inference", JASA 22: the interval of a
binomial proportion that stays inside [0, 1] and keeps its coverage near 0 and 1, where a failure share lives).
"""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError

#: a judge less sure than this of its best class calls the sample a failure
CONFIDENCE = 0.5
#: the real images' mean intensities between these percentiles are the data's range
PERCENTILES = (0.1, 99.9)

_RANGES: dict[tuple, tuple[float, float]] = {}


def intensity_range(dataset: str, root=None) -> tuple[float, float]:
    """(low, high): the :data:`PERCENTILES` of the per-image mean intensity of ``dataset``'s training split."""
    key = (dataset, str(root))
    if key not in _RANGES:
        from ..data import load_dataset

        data = load_dataset(dataset, root=root, split="train").data
        means = data.flatten(1).double().mean(dim=1)
        lo, hi = torch.quantile(means, torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64)).tolist()
        _RANGES[key] = (lo, hi)
    return _RANGES[key]


def wilson_interval(failures: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion failures/n (Wilson 1927, Eq. for the "probable
    limits"): (p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)."""
    from scipy.stats import norm

    if n < 1 or not 0 <= failures <= n:
        raise DifflabError(f"a share needs 0 <= failures <= n and n >= 1, got {failures} of {n}.")
    z = float(norm.ppf((1 + level) / 2))
    p = failures / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def failed(images: torch.Tensor, dataset: str, root=None) -> dict[str, torch.Tensor]:
    """Per-sample failure masks of ``images`` (N, C, H, W) in data coordinates ([0, 1]): ``unsure`` (judge
    confidence < :data:`CONFIDENCE`), ``brightness`` (mean intensity outside :func:`intensity_range`) and
    ``failed`` (either)."""
    from .classifiers import judge

    _, confidence = judge(images, dataset)
    lo, hi = intensity_range(dataset, root)
    means = images.clamp(0, 1).flatten(1).double().mean(dim=1)
    unsure = confidence < CONFIDENCE
    brightness = (means < lo) | (means > hi)
    return {"unsure": unsure, "brightness": brightness, "failed": unsure | brightness}


def failed_share(images: torch.Tensor, dataset: str, root=None) -> dict:
    """The share of failed samples with its 95% Wilson interval, and the counts by reason."""
    masks = failed(images, dataset, root)
    n, k = images.shape[0], int(masks["failed"].sum())
    low, high = wilson_interval(k, n)
    return {"failed": k / n, "failed 95% low": low, "failed 95% high": high, "num": n,
            "unsure": int(masks["unsure"].sum()), "brightness": int(masks["brightness"].sum())}
