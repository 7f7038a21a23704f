"""Interpolating between two images through the latent space of a diffusion model.

* DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", Sec. 5.3 and Fig. 6): encode both
  images to x_T by DDIM inversion (:func:`difflab.samplers.inversion.ddim_invert`), interpolate the x_T
  spherically (slerp, Shoemake 1985, as the DDIM paper does for Gaussian latents) and decode with η = 0 DDIM;
  λ = 0 and 1 give back the two images up to the inversion's error.
* DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Sec. 4.3 and Fig. 8): noise both images to
  x_t, x'_t ~ q(x_t | x_0) with the noise fixed across λ, decode x̄_t = (1 − λ) x_t + λ x'_t with the reverse
  process; larger t gives coarser, more varied interpolations.
"""

from __future__ import annotations


import torch

from ..errors import DifflabError
from ..process import q_sample
from ..random import randn
from ..samplers import discretize
from ..samplers.inversion import ddim_invert
from ._common import sample_from, timesteps_from

Tensor = torch.Tensor


def _check_lambda(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1:
        raise DifflabError(f"the interpolation weight λ must be a number in [0, 1], got {lam!r}.")
    return float(lam)


def slerp(a: Tensor, b: Tensor, lam: float) -> Tensor:
    """Spherical interpolation per example: sin((1 − λ)θ)/sin θ · a + sin(λθ)/sin θ · b, θ the angle between a
    and b (Shoemake 1985; DDIM Sec. 5.3). λ = 0 and 1 return a and b exactly; parallel a, b fall back to lerp."""
    lam = _check_lambda(lam)
    if lam == 0:
        return a.clone()
    if lam == 1:
        return b.clone()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(theta)
    small = sin < 1e-6
    wa = torch.where(small, torch.full_like(theta, 1 - lam), torch.sin((1 - lam) * theta) / sin.clamp(min=1e-12))
    wb = torch.where(small, torch.full_like(theta, lam), torch.sin(lam * theta) / sin.clamp(min=1e-12))
    shape = (-1, *([1] * (a.ndim - 1)))
    return (wa.reshape(shape) * a.double() + wb.reshape(shape) * b.double()).to(a.dtype)


def ddim_interpolate(denoiser, x_a: Tensor, x_b: Tensor, lambdas, steps: int = 50, fixed_point_iters: int = 0,
                     discretization: str | None = None) -> Tensor:
    """Images along the slerp of the DDIM latents of x_a and x_b (model coordinates, (B, ...) each) at every λ in
    ``lambdas``; returns (len(lambdas), B, ...). Deterministic: inversion and decoding both run η = 0 DDIM on the
    same ``steps`` times (DDIM Sec. 4.3 and 5.3)."""
    lams = [_check_lambda(v) for v in lambdas]
    if x_a.shape != x_b.shape:
        raise DifflabError(f"the two images to interpolate have shapes {tuple(x_a.shape)} and {tuple(x_b.shape)}.")
    schedule = denoiser.schedule
    timesteps = discretize(schedule, steps, discretization or ("trailing" if schedule.discrete else "logsnr"))
    z = ddim_invert(denoiser, torch.cat([x_a, x_b]), timesteps, fixed_point_iters=fixed_point_iters)
    z_a, z_b = z[: x_a.shape[0]], z[x_a.shape[0]:]
    latents = torch.cat([slerp(z_a, z_b, lam) for lam in lams])
    x = sample_from(denoiser, latents, timesteps, "ddim", eta=0.0)
    return x.reshape(len(lams), *x_a.shape)


def ddpm_interpolate(denoiser, x_a: Tensor, x_b: Tensor, lambdas, t, sampler: str = "ddpm", steps: int = 1000,
                     seed: int = 0, **options) -> Tensor:
    """DDPM's interpolation (Ho et al. 2020, Sec. 4.3): x_t, x'_t ~ q(x_t | x_0) with one noise draw for all λ,
    then ``sampler`` from x̄_t = (1 − λ) x_t + λ x'_t to 0, its noise also the same for every λ (generator
    seeded by ``seed``). ``t``: the time to noise to; ``steps``: the count for the whole schedule (a run from t
    takes its share). Returns (len(lambdas), B, ...)."""
    lams = [_check_lambda(v) for v in lambdas]
    schedule = denoiser.schedule
    if x_a.shape != x_b.shape:
        raise DifflabError(f"the two images to interpolate have shapes {tuple(x_a.shape)} and {tuple(x_b.shape)}.")
    gen = torch.Generator().manual_seed(seed)
    noise = randn((2, *x_a.shape), gen, x_a.device, x_a.dtype)
    times = torch.full((x_a.shape[0],), t)
    x_t, x_t_b = q_sample(schedule, x_a, times, noise[0]), q_sample(schedule, x_b, times, noise[1])
    timesteps = timesteps_from(schedule, t, steps)
    out = []
    for lam in lams:
        mixed = (1 - lam) * x_t + lam * x_t_b
        out.append(sample_from(denoiser, mixed, timesteps, sampler, torch.Generator().manual_seed(seed + 1), **options))
    return torch.stack(out)


def lambda_grid(n: int) -> list[float]:
    """n evenly spaced λ from 0 to 1 inclusive."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise DifflabError(f"the number of interpolation points must be an integer >= 2, got {n!r}.")
    return [k / (n - 1) for k in range(n)]


__all__ = ["slerp", "ddim_interpolate", "ddpm_interpolate", "lambda_grid"]
