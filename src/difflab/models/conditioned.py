"""A network with a conditioning image bound to it (SR3's low-resolution input)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class ConditionedNet(torch.nn.Module):
    """A U-Net with ``cond_channels`` bound to one conditioning image per sample, so that it reads
    ``net(x_t, t[, y])`` like any network a :class:`~difflab.denoiser.ModelDenoiser` wraps."""

    def __init__(self, model: torch.nn.Module, cond: Tensor):
        super().__init__()
        self.model, self.cond = model, cond

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.model(x, t, y, cond=self.cond)
