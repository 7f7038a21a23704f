"""Exponential moving average of the weights, used for sampling (Ho et al. 2020, Appx. B)."""

from __future__ import annotations

import copy

import torch


class EMA:
    """θ_ema ← d θ_ema + (1 − d) θ with the warm-up d = min(decay, (1 + n)/(10 + n)) after n updates,
    so early, badly initialised weights are forgotten quickly (as in TensorFlow's EMA with
    num_updates). Buffers are copied as they are."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        ema_params = list(self.model.parameters())
        params = list(model.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1
