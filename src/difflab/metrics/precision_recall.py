"""Improved precision and recall of a generative model (Kynkäänniemi et al. 2019, "Improved
Precision and Recall Metric for Assessing Generative Models", Sec. 3, Eqs. 1–2).

Each set of feature vectors estimates its manifold as the union of balls around its points, each
ball's radius the distance to that point's k-th nearest neighbour in the same set (k = 5 in the
paper). Precision is the fraction of generated points inside the real manifold; recall the
fraction of real points inside the generated one.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


def _check(features: Tensor, name: str, k: int) -> Tensor:
    if not isinstance(features, Tensor) or features.ndim != 2:
        raise DifflabError(f"{name} features must be a 2-D tensor (N, D), got "
                           f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}.")
    if features.shape[0] <= k:
        raise DifflabError(f"{name} features hold {features.shape[0]} points; k = {k} nearest neighbours need more than k.")
    return features.double()


def knn_radii(features: Tensor, k: int = 5, chunk: int = 1024) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    out = []
    for lo in range(0, features.shape[0], chunk):
        d = torch.cdist(features[lo:lo + chunk], features)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (distance 0)
    return torch.cat(out)


def manifold_coverage(points: Tensor, support: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """f(φ, Φ) of Eq. 1 for every point: whether it lies in some ball ‖φ − φ'‖ ≤ r(φ') of the support."""
    inside = []
    for lo in range(0, points.shape[0], chunk):
        d = torch.cdist(points[lo:lo + chunk], support)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: Tensor, fake: Tensor, k: int = 5) -> dict:
    """Precision = mean f(fake, real manifold), recall = mean f(real, fake manifold) (Eq. 2), in float64."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DifflabError(f"k must be a positive integer, got {k!r}.")
    real, fake = _check(real, "real", k), _check(fake, "generated", k)
    if real.shape[1] != fake.shape[1]:
        raise DifflabError(f"real and generated features differ in width: {real.shape[1]} vs {fake.shape[1]}.")
    precision = manifold_coverage(fake, real, knn_radii(real, k)).double().mean().item()
    recall = manifold_coverage(real, fake, knn_radii(fake, k)).double().mean().item()
    return {"precision": precision, "recall": recall, "k": k}
