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
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, dtype=dtype).to(device) if _cpu_gen(generator, device) \
            else torch.randn(shape, generator=generator, device=device, dtype=dtype)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise DifflabError(f"got {len(generators)} generators for a batch of {shape[0]}; pass one per sample.")
    rows = [randn(shape[1:], g, device, dtype) for g in generators]
    return torch.stack(rows) if rows else torch.empty(shape, device=device, dtype=dtype)


def _cpu_gen(generator, device) -> bool:
    """A CPU generator drawing for another device: draw on the CPU, then move (reproducible everywhere)."""
    return generator is not None and generator.device.type == "cpu" and device is not None and torch.device(device).type != "cpu"


def generators_from_seeds(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
