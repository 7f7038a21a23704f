"""Inpainting: fill the unknown pixels of an image with an unconditional model.

* replacement (Song et al. 2021, "Score-Based Generative Modeling through SDEs", Appx. I.2): the known pixels of
  every x_t are a draw from q(x_t | x_0), the unknown ones come from the model (:mod:`.measurement` with P = m ⊙);
* RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models",
  Algorithm 1 and Sec. 4.2): the same step, but the chain goes back up ``jump`` steps by the forward process and
  down again, ``repeats`` times, so the filled-in part has time to agree with the known part;
* with the predictor-corrector sampler (``sampler="pc"``) the known pixels follow the exact score of
  q(x_t | x_0) (Song et al. 2021, Appx. I.2 with their PC sampler, Algorithm 1), which works for score-SDE runs
  (``vp``, ``subvp``, ``ve``) as for discrete ones.

The mask m has 1 on the known pixels and 0 on the hole; the output's known pixels equal the input's exactly
(:func:`paste`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DifflabError
from ..random import randn
from ..samplers import info, with_capability
from ._common import sample_between
from .measurement import Replacement, fresh_noise_for

Tensor = torch.Tensor
PRESETS = ("right", "left", "bottom", "top", "center")


def preset_mask(name: str, shape: tuple) -> Tensor:
    """Mask (1, H, W) with the named part unknown: ``right``/``left``/``bottom``/``top`` half, or the ``center``
    square of half the size."""
    _, h, w = shape
    m = torch.ones(1, h, w)
    if name == "right":
        m[..., w // 2:] = 0
    elif name == "left":
        m[..., : w - w // 2] = 0
    elif name == "bottom":
        m[..., h // 2:, :] = 0
    elif name == "top":
        m[..., : h - h // 2, :] = 0
    elif name == "center":
        m[..., h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 0
    else:
        raise DifflabError(f"unknown mask preset {name!r}; expected one of {', '.join(PRESETS)}, a box x0,y0,x1,y1 "
                           "or a PNG file.")
    return m


def box_mask(box: str, shape: tuple) -> Tensor:
    """Mask (1, H, W) with the box "x0,y0,x1,y1" unknown (pixel columns x0..x1−1, rows y0..y1−1)."""
    _, h, w = shape
    try:
        x0, y0, x1, y1 = (int(v) for v in box.split(","))
    except ValueError:
        raise DifflabError(f"mask box {box!r} must be four integers x0,y0,x1,y1.") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise DifflabError(f"mask box {box!r} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h} "
                           "(the image's width and height).")
    m = torch.ones(1, h, w)
    m[..., y0:y1, x0:x1] = 0
    return m


def mask_from_spec(spec: str, shape: tuple) -> Tensor:
    """A mask (1, H, W), 1 = known, from a preset name, a box "x0,y0,x1,y1" (the hole) or a grayscale PNG of the
    image's size (white = known, black = hole; threshold 0.5)."""
    if spec in PRESETS:
        return preset_mask(spec, shape)
    if spec.endswith(".png"):
        from .images import read_image

        m = read_image(spec, "mask")
        if tuple(m.shape[-2:]) != tuple(shape[-2:]):
            raise DifflabError(f"mask {spec!r} is {m.shape[-1]}x{m.shape[-2]} pixels but the images are "
                               f"{shape[-1]}x{shape[-2]}.")
        return (m[0, :1] >= 0.5).float()
    if spec.count(",") == 3:
        return box_mask(spec, shape)
    if not Path(spec).suffix:
        return preset_mask(spec, shape)
    raise DifflabError(f"mask {spec!r} must be a preset ({', '.join(PRESETS)}), a box x0,y0,x1,y1 or a .png file.")


def check_mask(mask: Tensor, image: Tensor) -> Tensor:
    """The mask as a float tensor broadcastable to ``image`` (B, C, H, W): (1|B, 1|C, H, W) with values 0 and 1."""
    if mask.ndim == image.ndim - 1:
        mask = mask[None]
    if mask.ndim != image.ndim or tuple(mask.shape[-2:]) != tuple(image.shape[-2:]) \
            or any(m not in (1, s) for m, s in zip(mask.shape[:2], image.shape[:2])):
        raise DifflabError(f"the mask has shape {tuple(mask.shape)} but the images have shape {tuple(image.shape)}; "
                           "it must be (H, W)-sized like them.")
    if not torch.all((mask == 0) | (mask == 1)):
        raise DifflabError("the mask must hold only 0 (hole) and 1 (known).")
    return mask.to(image.dtype)


def paste(result: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """m ⊙ x_known + (1 − m) ⊙ result: the known pixels exactly as given."""
    return torch.where(mask.bool().expand_as(image), image, result)


def masked(denoiser, image: Tensor, mask: Tensor, sampler: str, generator=None) -> Replacement:
    """The denoiser conditioned on the known pixels m ⊙ x_0 (replacement, Song et al. 2021, Appx. I.2)."""
    return Replacement(denoiser, lambda v: mask * v, mask * image, fresh_noise=fresh_noise_for(sampler),
                       generator=generator)


def replacement(denoiser, image: Tensor, mask: Tensor, sampler: str = "ddpm", steps: int = 50, generator=None,
                discretization: str | None = None, **options) -> Tensor:
    """Inpaint ``image`` (model coordinates, (B, C, H, W)) where ``mask`` is 0 by the replacement method (Song et
    al. 2021, Appx. I.2; RePaint Eq. 8, without resampling): any sampler from x_T ~ N(0, σ²_max I), the known
    pixels held at q(x_t | x_0) (:class:`~difflab.tasks.measurement.Replacement`). The known pixels of the output
    are the input's exactly."""
    from ..samplers import sample

    mask = check_mask(mask, image)
    cond = masked(denoiser, image, mask, sampler, generator)
    x = sample(cond, tuple(image.shape), sampler=sampler, steps=steps, generator=generator, device=image.device,
               discretization=discretization, **options)
    return paste(x, image, mask)


def repaint_schedule(n: int, jump: int, repeats: int) -> list[int]:
    """The indices into n + 1 times (n the noisiest, 0 the data) that RePaint visits (Lugmayr et al. 2022,
    Sec. 4.2, "jump length" j and "resampling" r): down one index at a time; on reaching a multiple k of j with
    k + j <= n, go back up j indices, r − 1 times per such k."""
    for name, v, lo in (("jump", jump, 1), ("repeats", repeats, 1), ("steps", n, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise DifflabError(f"RePaint {name} must be an integer >= {lo}, got {v!r}.")
    left = {k: repeats - 1 for k in range(0, n - jump + 1, jump)}
    idx, path = n, [n]
    while idx > 0:
        idx -= 1
        path.append(idx)
        if left.get(idx, 0) > 0:
            left[idx] -= 1
            path.extend(range(idx + 1, idx + jump + 1))
            idx += jump
    return path


def renoise(schedule, x_s: Tensor, s, t, noise: Tensor) -> Tensor:
    """x_t ~ q(x_t | x_s) = N((α_t/α_s) x_s, σ²_{t|s} I) for t > s: RePaint's step back up, x_t ~ N(√(1 − β_t) x_{t−1},
    β_t I) (Lugmayr et al. 2022, Eq. 9 and Algorithm 1, line 9), over a jump of several steps (Kingma et al. 2021,
    Eq. 22)."""
    from ..process import transition_variance

    coefs = [f(torch.tensor(float(u), dtype=torch.float64)) for u in (t, s) for f in (schedule.alpha, schedule.sigma)]
    a_t, _, a_s, _ = coefs
    return float(a_t / a_s) * x_s + float(transition_variance(*coefs)) ** 0.5 * noise


def repaint(denoiser, image: Tensor, mask: Tensor, sampler: str = "ddpm", steps: int = 50, jump: int = 5,
            repeats: int = 5, generator=None, discretization: str | None = None, **options) -> Tensor:
    """RePaint (Lugmayr et al. 2022, Algorithm 1 with the jumps of Sec. 4.2) on the ``steps`` times of a
    discretization: every descent is ``sampler`` (``ddpm`` as in the paper, or ``ddim``) on the replacement
    denoiser, every ascent the forward process (:func:`renoise`), along :func:`repaint_schedule`. Costs about
    ``steps · repeats`` network evaluations. The known pixels of the output are the input's exactly."""
    from ..samplers import discretize, prior_std

    if not info(sampler)["steppable"]:
        raise DifflabError(f"RePaint descends with {' or '.join(with_capability('steppable'))}, not {sampler!r}.")
    mask = check_mask(mask, image)
    schedule = denoiser.schedule
    if discretization is None:
        discretization = "trailing" if schedule.discrete else "logsnr"
    times = [0, *reversed(discretize(schedule, steps, discretization).tolist())]  # times[k]: index k, 0 = data
    cond = masked(denoiser, image, mask, sampler, generator)
    path = repaint_schedule(len(times) - 1, jump, repeats)
    x = randn(tuple(image.shape), generator, image.device, image.dtype) * prior_std(schedule)
    i = 0
    while i < len(path) - 1:
        j = i
        if path[i + 1] < path[i]:  # a descent: the sampler from times[path[i]] down to times[path[j]]
            while j + 1 < len(path) and path[j + 1] < path[j]:
                j += 1
            visited = [times[k] for k in path[i:j + 1] if k > 0]
            stop = times[path[j]]
            x = sample_between(cond, x, visited, stop, sampler, generator, **options)
        else:  # an ascent by the forward process
            while j + 1 < len(path) and path[j + 1] > path[j]:
                j += 1
            x = renoise(schedule, x, times[path[i]], times[path[j]],
                        randn(tuple(image.shape), generator, image.device, image.dtype))
        i = j
    return paste(x, image, mask)


def inpaint(denoiser, image: Tensor, mask: Tensor, method: str = "replacement", **options) -> Tensor:
    """Inpaint by ``method``: ``replacement`` (any sampler; ``pc`` for score-SDE runs) or ``repaint``."""
    if method == "replacement":
        return replacement(denoiser, image, mask, **options)
    if method == "repaint":
        return repaint(denoiser, image, mask, **options)
    raise DifflabError(f"unknown inpainting method {method!r}; expected replacement or repaint.")


__all__ = ["PRESETS", "preset_mask", "box_mask", "mask_from_spec", "check_mask", "paste", "masked", "replacement",
           "repaint_schedule", "renoise", "repaint", "inpaint"]
