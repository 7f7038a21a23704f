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


#: the largest seed a ``torch.Generator`` takes (a signed 64-bit integer)
MAX_SEED = 2**63 - 1
#: per-sample seeds are ``seed * SEED_STRIDE + i`` for sample i (:func:`per_sample_generators`)
SEED_STRIDE = 1_000_003


def check_seed(seed, name: str = "seed", headroom: int = 0) -> int:
    """Refuse a seed that is not an integer from 0 to :data:`MAX_SEED` − ``headroom`` (the seeds derived from it,
    such as seed + 1 for a second generator, must fit too), naming the parameter."""
    top = MAX_SEED - headroom
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= top:
        raise DifflabError(f"⟨{name}⟩ must be an integer from 0 to {top}, got {seed!r}.")
    return seed


def generators_from_seeds(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(check_seed(int(s))) for s in seeds]


def per_sample_generators(seed: int, start: int, count: int, total: int | None = None) -> list[torch.Generator]:
    """The generators of samples ``start`` .. ``start + count − 1`` of a run seeded ``seed``: sample i draws from
    seed · SEED_STRIDE + i alone, so it comes out the same whatever the batch it is drawn in. ``total`` (the
    number of samples of the whole run, default start + count) bounds the seed the derived ones leave room for."""
    total = start + count if total is None else total
    check_seed(seed, "seed")
    if seed > (MAX_SEED - total) // SEED_STRIDE:
        raise DifflabError(f"⟨seed⟩ {seed} is too large: sample seeds are seed x {SEED_STRIDE} + i, so it must be at most "
                           f"{(MAX_SEED - total) // SEED_STRIDE}.")
    return [torch.Generator().manual_seed(seed * SEED_STRIDE + i) for i in range(start, start + count)]
