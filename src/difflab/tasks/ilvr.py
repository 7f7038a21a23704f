"""ILVR: zero-shot super-resolution with an unconditional model (Choi et al. 2021, "ILVR: Conditioning Method
for Denoising Diffusion Probabilistic Models").

A low-pass filter φ_N (downsampling by N, then upsampling back) fixes the low frequencies of every step to those
of the reference: x_{t−1} = x'_{t−1} − φ_N(x'_{t−1}) + φ_N(y_{t−1}), x'_{t−1} ~ p_θ(x_{t−1} | x_t),
y_{t−1} ~ q(y_{t−1} | y) (their Eq. 4 and Algorithm 1). For super-resolution only the low-resolution image
is known: φ_N(y) = up(lr). It is the replacement method with P = φ_N (:mod:`.measurement`). Here φ_N is N×N
average pooling followed by nearest-neighbour upsampling, the orthogonal projection onto images constant on N×N
blocks (their code resizes bicubically both ways, which is not a projection): then P(x̂_0) = P(y) holds exactly
after the replacement, and the last DDIM step returns an image whose N×N averages are the low-resolution input.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError
from .measurement import Replacement, fresh_noise_for
from .superres import low_res

Tensor = torch.Tensor


def block_upsample(x: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upsampling by N: every pixel becomes an N×N block."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def low_pass(x: Tensor, factor: int) -> Tensor:
    """φ_N(x) = up_N(down_N(x)) (ILVR Sec. 3.1): N×N average pooling, then nearest upsampling by N (a projection)."""
    return block_upsample(low_res(x, factor), factor)


def ilvr(denoiser, lowres: Tensor, factor: int, sampler: str = "ddpm", steps: int = 50, generator=None,
         t_stop: float = 0.0, **options) -> Tensor:
    """Sample images whose low frequencies match ``lowres`` (model coordinates, (B, C, H/N, W/N)) from an
    unconditional denoiser (ILVR Algorithm 1): every step's φ_N part replaced by that of a draw from
    q(y_t | y), φ_N(y) = up_N(lowres); ``t_stop`` > 0 leaves the steps below it unconditioned (their
    conditioning range). Returns (B, C, H, W)."""
    from ..samplers import sample

    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise DifflabError(f"the ILVR factor N must be a positive integer, got {factor!r}.")
    measured = block_upsample(lowres, factor)
    cond = Replacement(denoiser, lambda v: low_pass(v, factor), measured, fresh_noise=fresh_noise_for(sampler),
                       generator=generator, t_stop=t_stop)
    return sample(cond, tuple(measured.shape), sampler=sampler, steps=steps, generator=generator,
                  device=lowres.device, **options)


__all__ = ["block_upsample", "low_pass", "ilvr"]
