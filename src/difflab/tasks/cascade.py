"""Two-stage sampling: a low-resolution base model, optionally guided, then a super-resolution model.

Dhariwal & Nichol 2021 (Sec. 5, Table 5: "ADM-G, ADM-U") sample a guided base model at low resolution and pass its
samples to an upsampling diffusion model; Ho et al. 2022 ("Cascaded Diffusion Models") study the same pipeline. Here
the base is any difflab image model (class guidance as ``difflab sample`` offers it) and the upsampler an SR3 model
(:func:`difflab.tasks.superres.sr3`, trained with ``data.low_res_factor`` f), whose low-resolution input must be the
base model's image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


@dataclass
class Cascade:
    low: Tensor   # the base model's samples (B, C, h, w), data coordinates
    high: Tensor  # the upsampler's outputs (B, C, f·h, f·w)


def check_pair(base, upsampler) -> int:
    """Refuse, before any sampling, a base and an upsampler that do not fit together; returns the factor f."""
    from .superres import factor_of

    if base.kind != "image" or upsampler.kind != "image":
        raise DifflabError("a cascade joins two image models; one of these models 2-D points.")
    if base.config["data"].get("low_res_factor"):
        raise DifflabError(f"the base model {str(base.path)!r} is itself a super-resolution model; the base must "
                           "generate images from noise.")
    factor = factor_of(upsampler)
    c, h, w = upsampler.shape
    if tuple(base.shape) != (c, h // factor, w // factor):
        raise DifflabError(f"the base model makes {'x'.join(map(str, base.shape))} images, but the upsampler takes "
                           f"{c}x{h // factor}x{w // factor} ones (its {c}x{h}x{w} output pooled by {factor}).")
    return factor


def cascade(base, upsampler, num: int, seed: int = 0, base_options: dict | None = None,
            sr_sampler: str = "ddpm", sr_steps: int = 50, sr_start: float = 1.0, batch_size: int = 500,
            progress: bool = False) -> Cascade:
    """Draw ``num`` base samples (``base_options`` go to ``Run.sample``: sampler, steps, classes, guidance, scale, ...),
    then super-resolve them with ``upsampler``; sample i's generator (seed, i) feeds both stages, so it comes out the
    same whatever the batch."""
    from ..random import per_sample_generators
    from .superres import sr3

    check_pair(base, upsampler)
    lows, highs = [], []
    opts = dict(base_options or {})
    classes = opts.pop("classes", None)
    for lo in range(0, num, batch_size):
        n = min(batch_size, num - lo)
        batch_classes = None if classes is None else [classes[(lo + i) % len(classes)] for i in range(n)]
        gens = per_sample_generators(seed, lo, n, num)  # each sample's stream feeds both stages
        low = base.sample(n, generator=gens, classes=batch_classes, progress=progress, **opts)
        high = sr3(upsampler, low.clamp(0, 1), sampler=sr_sampler, steps=sr_steps, start=sr_start, generator=gens)
        lows.append(low)
        highs.append(high)
    return Cascade(torch.cat(lows), torch.cat(highs))
