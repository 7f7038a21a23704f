"""Timestep embeddings shared by the networks.

Models know nothing of noise schedules: they receive ``t`` in whatever units the caller uses
(discrete timesteps 1..T, possibly non-integer, or a continuous time already scaled by the
caller) and embed it with the Transformer sinusoids.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.errors import DifflabError

__all__ = ["timestep_embedding", "expand_timesteps"]


def expand_timesteps(t: Tensor | float | int, batch: int, device: torch.device | None = None) -> Tensor:
    """Return ``t`` as a floating tensor of shape ``(batch,)``.

    Accepts a python number, a 0-d tensor or a one-element tensor (broadcast to the batch),
    or a tensor of shape ``(batch,)``. Integer tensors become float32; float64 stays float64.
    """
    if not isinstance(t, Tensor):
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise DifflabError(f"Timestep t must be a number or a tensor of shape ({batch},), got {type(t).__name__}.")
        return torch.full((batch,), float(t), device=device, dtype=torch.float32)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.dim() == 0 or (t.dim() == 1 and t.shape[0] == 1 and batch != 1):
        return t.reshape(1).expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise DifflabError(
            f"Timestep t must have shape ({batch},) to match the batch, got {tuple(t.shape)}."
        )
    return t


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal timestep embedding (Vaswani et al. 2017, Sec. 3.5; used by Ho et al. 2020, Sec. 4).

    With ``half = dim // 2`` and ``f_i = exp(-log(max_period) * i / half)`` for ``i < half``,
    the embedding of a time ``t`` is

        [cos(t f_0), ..., cos(t f_{half-1}), sin(t f_0), ..., sin(t f_{half-1})]

    (cosines first, then sines), followed by a single zero when ``dim`` is odd.

    Note: the original DDPM TensorFlow code puts the sines first and divides by ``half - 1``;
    weights trained with that convention need an adapter, not this function.

    Args:
        t: times of shape ``(B,)`` (a 0-d tensor gives shape ``(dim,)``). Computed in float32,
            or float64 when ``t`` is float64.
        dim: embedding width, >= 1.
        max_period: the longest period, ``max_period`` in the formula.

    Returns:
        Tensor of shape ``t.shape + (dim,)``.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise DifflabError(f"timestep_embedding dim must be a positive integer, got {dim!r}.")
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t))
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(dtype)
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=dtype) * (-math.log(max_period) / max(half, 1)))
    args = t.unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb
