"""Combining energies (the lecture's products of experts; Hinton 2002): a product p₁(x) p₂(x) / Z adds energies,
E = E₁ + E₂, so a point must be likely under every expert (AND); a mixture w p₁ + (1 − w) p₂ keeps whatever either
allows (OR). Both are log-densities that the MCMC samplers take; a diffusion model's product of experts (a sum of
scores) is :mod:`difflab.guidance`'s composition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import DifflabError

Tensor = torch.Tensor
LogProb = Callable[[Tensor], Tensor]


def product(*experts: LogProb) -> LogProb:
    """log p(x) = Σ_k log p_k(x) (+ a constant): the product of experts, the sum of their negative energies."""
    if len(experts) < 2:
        raise DifflabError(f"a product of experts needs at least two, got {len(experts)}.")
    return lambda x: sum(e(x) for e in experts)


def mixture(*experts: LogProb, weights: Sequence[float] | None = None) -> LogProb:
    """log p(x) = log Σ_k w_k p_k(x) for normalised experts p_k (equal weights by default)."""
    if len(experts) < 2:
        raise DifflabError(f"a mixture needs at least two experts, got {len(experts)}.")
    w = [1.0 / len(experts)] * len(experts) if weights is None else [float(v) for v in weights]
    if len(w) != len(experts) or any(v <= 0 for v in w):
        raise DifflabError(f"a mixture needs {len(experts)} positive weights, got {list(weights or [])}.")
    logw = [math.log(v / sum(w)) for v in w]
    return lambda x: torch.logsumexp(torch.stack([lw + e(x) for lw, e in zip(logw, experts)]), 0)
