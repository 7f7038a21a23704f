"""Super-resolution with a conditional diffusion model: SR3 (Saharia et al. 2021, "Image Super-Resolution
via Iterative Refinement").

SR3 trains a denoiser p(y | x_lr) whose U-Net sees the noisy high-resolution image y_t beside the low-resolution
input upsampled to the output size by bicubic interpolation (Sec. 2.3, "we upsample the low-resolution image to
the target resolution using bicubic interpolation" and concatenate it with y_t along channels). Here the
low-resolution image is made from a training image by f×f average pooling (:func:`low_res`), the network is a
U-Net with ``cond_channels`` (:class:`difflab.models.unet.UNet`), and the run's ``data.low_res_factor`` records
f, so sampling rebuilds the same conditioning. Zero-shot super-resolution with an unconditional model is ILVR
(:mod:`difflab.tasks.ilvr`).

Average pooling and bicubic interpolation are both linear and preserve constants, so they commute with the
run's affine normalisation: the conditioning can be made in data or in model coordinates alike.
"""

from __future__ import annotations

import torch

from ..data.lowres import condition, low_res, upsample  # noqa: F401 (re-exported)
from ..errors import DifflabError
from ..models.conditioned import ConditionedNet  # noqa: F401 (re-exported)

Tensor = torch.Tensor


def factor_of(run) -> int:
    """The low-resolution factor a run was trained with (its ``data.low_res_factor``)."""
    factor = run.config["data"].get("low_res_factor")
    if not factor:
        raise DifflabError(f"model {str(run.path)!r} is not a super-resolution model (its config has no "
                           "data.low_res_factor); train one with the preset mnist-sr, or use ILVR (:func:`difflab.tasks.ilvr.ilvr`; ⟨method⟩ ilvr).")
    return int(factor)


def sr3(run, lowres: Tensor, sampler: str = "ddpm", steps: int = 50, generator=None, start: float = 1.0,
        **options) -> Tensor:
    """Super-resolve ``lowres`` (B, C, h, w) in data coordinates with an SR3 run: sample y_0 ~ p(y | x_lr) with the
    conditioned denoiser (Saharia et al. 2021, Algorithm 2: ancestral sampling, the default ``ddpm``; any registered
    sampler may be named, but the deterministic ``ddim`` started from pure noise keeps the errors of its first,
    highest-noise steps and leaves grey noisy backgrounds on MNIST, see ``docs/results/editing_mnist.md``) from pure noise
    (``start`` = 1), or, for ``start`` = t_0 < 1, from the upsampled input noised to t_0 by q(y_t0 | up(x_lr))
    with t_0's share of ``steps`` ("come closer, diffuse faster": Chung, Sim & Ye 2022, Sec. 3, Eq. 6, the
    SDEdit start of :func:`difflab.tasks.sdedit.perturb`). Returns the (B, C, f·h, f·w) images in data coordinates."""
    from ..denoiser import build_denoiser
    from ..samplers import sample
    from ._common import sample_from, start_time, timesteps_from
    from .sdedit import perturb

    factor = factor_of(run)
    c, h, w = run.shape
    want = (c, h // factor, w // factor)
    if lowres.ndim != 4 or tuple(lowres.shape[1:]) != want:
        raise DifflabError(f"the low-resolution input has shape {tuple(lowres.shape[1:])}, but this model upscales "
                           f"{want[0]}x{want[1]}x{want[2]} images by {factor}.")
    device = next(run.model.parameters()).device
    cond = run.normalization.to_model(upsample(lowres.float(), factor)).to(device)
    denoiser = build_denoiser(ConditionedNet(run.model, cond), run.config)
    if start == 1.0:
        x = sample(denoiser, (lowres.shape[0], *run.shape), sampler=sampler, steps=steps, generator=generator,
                   device=device, **options)
    else:
        t0 = start_time(run.schedule, start)
        if float(t0) < float(run.schedule.t_min):
            return run.normalization.to_data(cond)
        x = sample_from(denoiser, perturb(run.schedule, cond, t0, generator), timesteps_from(run.schedule, t0, steps),
                        sampler, generator, **options)
    return run.normalization.to_data(x)


def psnr(x: Tensor, reference: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image in dB for images in [0, 1]: 10 log10(1 / MSE)."""
    mse = (x.double() - reference.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-12))


__all__ = ["low_res", "upsample", "condition", "ConditionedNet", "factor_of", "sr3", "psnr"]
