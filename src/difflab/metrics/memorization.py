"""Does a model copy its training images? Nearest training neighbours and a memorization rate.

The check of Ho et al. 2020 (Fig. 11–12: each sample beside its nearest training images) made quantitative in the
spirit of Carlini et al. 2023 ("Extracting Training Data from Diffusion Models", Sec. 5: a sample counts as copied
when it is much closer to one training image than is usual), calibrated on held-out data instead of a fixed
constant:

* :func:`nearest` — the k nearest rows of a pool to each query, by Euclidean distance (pixels or features).
* :func:`memorization_rate` — a sample is *memorized* when its distance to the nearest training image is below
  ``ratio`` (1/3 by default) of the median nearest-training distance of real **held-out** images: these are
  in-distribution images the model never saw, so the median says how far a new digit usually lies from the training
  set. The same threshold applied to the held-out images themselves gives the rate's floor (near-duplicates that
  the data set itself holds): a model's rate means something only above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DifflabError

Tensor = torch.Tensor
RATIO = 1 / 3


def _rows(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1:
        raise DifflabError(f"{what} must be a tensor of at least one row, got {getattr(x, 'shape', type(x).__name__)}.")
    x = x.reshape(x.shape[0], -1).double()
    if not bool(torch.isfinite(x).all()):
        raise DifflabError(f"{what} hold NaN or infinite values.")
    return x


def nearest(queries: Tensor, pool: Tensor, k: int = 1, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """(distances, indices), each (N, k): the ``k`` rows of ``pool`` nearest to each row of ``queries`` (images are
    flattened), in float64, nearest first."""
    q, p = _rows(queries, "the queries"), _rows(pool, "the pool")
    if q.shape[1] != p.shape[1]:
        raise DifflabError(f"queries have {q.shape[1]} values per row but the pool has {p.shape[1]}.")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= p.shape[0]:
        raise DifflabError(f"k must be an integer from 1 to the pool's {p.shape[0]} rows, got {k!r}.")
    dists, idx = [], []
    for lo in range(0, q.shape[0], chunk):
        d = torch.cdist(q[lo:lo + chunk], p)
        v, i = torch.topk(d, k, dim=1, largest=False)
        dists.append(v)
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


@dataclass(frozen=True)
class Memorization:
    """``rate``: the share of samples under the threshold; ``floor``: the share of held-out real images under it;
    ``threshold`` = ratio × ``heldout_median``; ``memorized``: a bool per sample."""

    rate: float
    floor: float
    threshold: float
    heldout_median: float
    memorized: Tensor


def memorization_rate(sample_distances: Tensor, heldout_distances: Tensor, ratio: float = RATIO) -> Memorization:
    """The memorization rate of samples whose nearest-training distances are ``sample_distances`` (N,), against
    held-out real images' nearest-training distances ``heldout_distances`` (M,) (module docstring)."""
    s, h = _rows(sample_distances.reshape(-1, 1), "the sample distances"), _rows(heldout_distances.reshape(-1, 1),
                                                                                   "the held-out distances")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise DifflabError(f"the ratio must be a number strictly between 0 and 1, got {ratio!r}.")
    median = float(h.flatten().median())
    threshold = ratio * median
    memorized = s.flatten() < threshold
    return Memorization(float(memorized.double().mean()), float((h.flatten() < threshold).double().mean()), threshold,
                        median, memorized)
