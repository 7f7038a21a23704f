"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", Sec. 4):
IS = exp(E_x KL(p(y | x) ‖ p(y))), computed on ``splits`` disjoint parts of the samples, reported
as the mean and standard deviation over the parts, as in the original code.

Over any classifier's probabilities; a report names the classifier (``IS[mnist-classifier]``).
"""

from __future__ import annotations

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


def inception_score_of(probs: Tensor) -> float:
    """exp(mean_x Σ_y p(y|x) (log p(y|x) − log p(y))) with p(y) the mean of p(y|x) over the samples (float64)."""
    p = probs.double()
    marginal = p.mean(0, keepdim=True)
    kl = torch.where(p > 0, p * (torch.log(p) - torch.log(marginal)), torch.zeros_like(p)).sum(1)
    return float(torch.exp(kl.mean()))


def inception_score(probs: Tensor, splits: int = 10) -> dict:
    """IS over ``splits`` equal consecutive parts of ``probs`` (N, K), rows summing to 1: mean and std."""
    if not isinstance(probs, Tensor) or probs.ndim != 2:
        raise DifflabError("class probabilities must be a 2-D tensor (N, K).")
    if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= probs.shape[0]:
        raise DifflabError(f"splits must be an integer in 1..N = {probs.shape[0]}, got {splits!r}.")
    if (probs < 0).any() or not torch.allclose(probs.double().sum(1), torch.ones(probs.shape[0], dtype=torch.float64), atol=1e-4):
        raise DifflabError("class probabilities must be non-negative with rows summing to 1 (softmax outputs).")
    parts = [inception_score_of(part) for part in probs.chunk(splits)]
    v = torch.tensor(parts, dtype=torch.float64)
    return {"is": float(v.mean()), "is_std": float(v.std()) if splits > 1 else 0.0, "splits": splits}
