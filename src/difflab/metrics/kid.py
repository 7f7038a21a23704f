"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4 / Appendix):
the unbiased estimator of the squared MMD between two feature sets under the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³, averaged over random subsets, with its standard error.

Named by its feature extractor in reports (``KID[mnist-classifier]``); only Inception features make it
the published KID.
"""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> Tensor:
    """k(x, y) = (γ xᵀy + c)^degree with γ = 1/d by default (the KID kernel), for all pairs."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * x @ y.T + coef) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, **kernel) -> float:
    """MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j)
    (Gretton et al. 2012, Lemma 6), in float64."""
    x, y = x.double(), y.double()
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x, **kernel), polynomial_kernel(y, y, **kernel), polynomial_kernel(x, y, **kernel)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000,
                    generator: torch.Generator | None = None) -> dict:
    """KID: the mean of MMD²_u over ``subsets`` random subsets of ``subset_size`` (without replacement
    within a subset; the whole sets when they are smaller), and its standard error over the subsets."""
    for name, f in (("real", real), ("generated", fake)):
        if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] < 2:
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise DifflabError(f"{name} features must be a 2-D tensor (N, D) with N >= 2, got {shape}.")
    if real.shape[1] != fake.shape[1]:
        raise DifflabError(f"real and generated features differ in width: {real.shape[1]} vs {fake.shape[1]}.")
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise DifflabError(f"subsets must be a positive integer, got {subsets!r}.")
    size = min(subset_size, real.shape[0], fake.shape[0])
    values = []
    for _ in range(subsets):
        i = torch.randperm(real.shape[0], generator=generator)[:size]
        j = torch.randperm(fake.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(real[i], fake[j]))
    v = torch.tensor(values, dtype=torch.float64)
    se = float(v.std() / math.sqrt(subsets)) if subsets > 1 else float("nan")
    return {"kid": float(v.mean()), "kid_se": se, "subsets": subsets, "subset_size": size}
