"""Random draws with explicit generators.

Every random draw in difflab takes a ``torch.Generator`` (or ``None`` for the global one). A list
of generators, one per example, draws each example's noise from its own generator, so a sample
of a batch can be reproduced alone, whatever the batch size.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from .errors import DifflabError

GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]


def randn(shape: Sequence[int], generator: GeneratorLike = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape``; with a list of generators, row i comes from generator i."""
    shape = tuple(shape)
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        # draw on the generator's own device, then move: the same seed gives the same noise everywhere
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise DifflabError(f"got {len(generators)} generators for a batch of {shape[0]}; pass one per sample.")
    rows = [randn(shape[1:], g, device, dtype) for g in generators]
    return torch.stack(rows) if rows else torch.empty(shape, device=device, dtype=dtype)


def generators_from_seeds(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
