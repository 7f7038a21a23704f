"""Fixed train/test splits for the datasets that ship without one.

scikit-learn's 8×8 digits come as one set of 1,797 images. difflab splits them once, the same way on every
machine: within each class, a permutation drawn from ``torch.Generator().manual_seed(DIGITS_SPLIT_SEED + class)``
puts the first ``round(25% of the class)`` images in "test" (450 images) and the rest in "train" (1,347). Models
train on "train"; reference sets for FD/KID/precision/recall, bits/dim and nearest-neighbour checks use "test",
which no model and no judge saw. The SHA-256 of the test indices is recorded with the digits judge so that a
change to this split is noticed.

MNIST and Fashion-MNIST keep their official 60,000 / 10,000 split; the toy sets draw "test" with another seed
(``difflab.data.TEST_SEED_OFFSET``); ``mnist-pairs`` holds out digit pairs (``difflab.data.captions``).
"""

from __future__ import annotations

import hashlib

import torch

DIGITS_SPLIT_SEED = 20240
DIGITS_TEST_FRACTION = 0.25

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "digits_split", "indices_sha256"]


def digits_split(labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices) into the 1,797 images of scikit-learn's digits, both sorted: the stratified
    split described in the module docstring. ``labels`` are the digits' 1,797 labels (loaded when None)."""
    if labels is None:
        from sklearn.datasets import load_digits

        labels = torch.as_tensor(load_digits().target, dtype=torch.int64)
    test = []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED + c))
        test.append(idx[perm[: round(DIGITS_TEST_FRACTION * len(idx))]])
    test_idx = torch.cat(test).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    return torch.nonzero(mask).flatten(), test_idx


def indices_sha256(indices: torch.Tensor) -> str:
    """SHA-256 of a list of indices written as comma-separated decimal integers."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()
