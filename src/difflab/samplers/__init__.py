"""Samplers: pure functions ``(denoiser, x_T, timesteps, generator, ...) -> x_0``, one family per
file, each mirroring its paper's algorithm. A registry maps names to samplers so the CLI and the
benchmarks enumerate them instead of hard-coding lists.

Every sampler has the signature ``fn(denoiser, x_T, timesteps, generator=None, callback=None,
progress=False, **options)``; ``timesteps`` is a decreasing sequence in {1..T} and the last step
goes to t = 0. ``callback(i, t, x_t, prediction)`` is called at every step (for pictures of
generation as it happens).
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterator, Sequence

import torch

from ..errors import DifflabError
from ..random import GeneratorLike, randn
from .timesteps import check_steps, spaced_timesteps

_REGISTRY: dict[str, Callable] = {}
_BASE_ARGS = {"denoiser", "x_T", "timesteps", "generator", "callback", "progress"}


def register(name: str):
    """Class the decorated function as the sampler ``name``."""
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


def _load_all() -> None:
    from . import ddim, ddpm  # noqa: F401  (registration side effects)


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Callable:
    _load_all()
    if name not in _REGISTRY:
        raise DifflabError(f"unknown sampler {name!r}; expected one of {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def options(name: str) -> dict[str, object]:
    """The sampler-specific options of ``name`` and their defaults."""
    params = inspect.signature(get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _BASE_ARGS}


def step_pairs(timesteps: Sequence[int], progress: bool = False, desc: str = "sampling") -> Iterator[tuple[int, int, int]]:
    """Yield (i, t, s): step i goes from timestep t to s, the next visited one (0 after the last)."""
    ts = [int(t) for t in timesteps]
    nxt = ts[1:] + [0]
    pairs = list(zip(ts, nxt))
    if progress:
        from ..progress import progress_bar
        pairs = progress_bar(pairs, desc=desc, leave=False, unit="step")
    for i, (t, s) in enumerate(pairs):
        yield i, t, s


def sample(denoiser, shape: Sequence[int], sampler: str = "ddim", steps: int = 50, generator: GeneratorLike = None,
           x_T: torch.Tensor | None = None, spacing: str = "trailing", device=None, callback=None,
           progress: bool = False, **sampler_options) -> torch.Tensor:
    """Draw samples of ``shape`` from any denoiser, in the denoiser's (model) coordinates.

    ``generator`` is one ``torch.Generator`` or a list of them, one per sample (then sample i
    depends on generator i alone). ``x_T`` starts from given noise instead of drawing it.
    """
    fn = get(sampler)
    allowed = options(sampler)
    for key in sampler_options:
        if key not in allowed:
            raise DifflabError(f"sampler {sampler!r} has no option {key!r}; its options are {', '.join(allowed) or 'none'}.")
    T = denoiser.schedule.T
    check_steps(steps, T)
    shape = tuple(shape)
    if x_T is None:
        x_T = randn(shape, generator, device)
    elif tuple(x_T.shape) != shape:
        raise DifflabError(f"x_T has shape {tuple(x_T.shape)} but samples of shape {shape} were asked for.")
    timesteps = spaced_timesteps(T, steps, spacing)
    return fn(denoiser, x_T, timesteps, generator=generator, callback=callback, progress=progress, **sampler_options)


__all__ = ["register", "names", "get", "options", "sample", "spaced_timesteps", "step_pairs"]
