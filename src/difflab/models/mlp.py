"""A small time-conditioned MLP for 2-D (or low-dimensional) toy data."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from difflab.errors import DifflabError
from difflab.models.embedding import expand_timesteps, timestep_embedding

__all__ = ["MLP"]


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DifflabError(f"MLP option '{name}' must be an integer >= {minimum}, got {value!r}.")


class MLP(nn.Module):
    """Time-conditioned MLP: maps ``(x, t)`` with ``x`` of shape ``(B, dim)`` to ``(B, dim)``.

    Time path: sinusoidal embedding of width ``time_dim`` -> Linear -> SiLU -> Linear (to
    ``hidden``). Data path: Linear(dim, hidden), then ``depth`` hidden layers, each
    ``h <- Linear(SiLU(h + P_i(SiLU(temb))))`` where ``P_i`` is that layer's own projection of
    the time embedding, then SiLU -> Linear(hidden, dim).
    """

    def __init__(self, dim: int = 2, hidden: int = 256, depth: int = 3, time_dim: int = 64):
        super().__init__()
        _check_int("dim", dim, 1)
        _check_int("hidden", hidden, 1)
        _check_int("depth", depth, 1)
        _check_int("time_dim", time_dim, 1)
        self.config = {"dim": dim, "hidden": hidden, "depth": depth, "time_dim": time_dim}
        self.dim = dim
        self.time_dim = time_dim
        self.time_embed = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise DifflabError(f"MLP input x must have shape (B, {self.dim}), got {tuple(x.shape)}.")
        t = expand_timesteps(t, x.shape[0], x.device)
        emb = timestep_embedding(t, self.time_dim).to(x.dtype)
        temb = F.silu(self.time_embed(emb))
        h = self.inp(x)
        for layer, proj in zip(self.layers, self.time_proj):
            h = layer(F.silu(h + proj(temb)))
        return self.out(F.silu(h))
