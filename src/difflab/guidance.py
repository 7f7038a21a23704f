"""Guidance: steering a class-conditional denoiser towards the classes asked for.

Classifier-free guidance (Ho & Salimans 2022) needs no extra network: the model is trained with
its label dropped to a null label some of the time, so one network gives both ε(x_t, c) and the
unconditional ε(x_t, ∅). Every guided denoiser here is again a :class:`~difflab.denoiser.Denoiser`,
so every sampler runs it unchanged.

Scale convention: ``w`` as in Ho & Salimans 2022, Eq. 6 — w = 0 is the plain conditional model,
w > 0 guides harder. (diffusers' ``guidance_scale`` is 1 + w.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import process
from .denoiser import ModelDenoiser, Prediction
from .errors import DifflabError
from .schedules import as_time

Tensor = torch.Tensor

__all__ = ["guided_eps", "ClassifierFreeGuidance", "conditional_denoiser", "check_classes"]


def guided_eps(eps_uncond: Tensor, eps_conds: Sequence[Tensor], w: float) -> Tensor:
    """ε̃ = ε(x, ∅) + Σ_i (1 + w) (ε(x, c_i) − ε(x, ∅)).

    One condition: Ho & Salimans 2022, Eq. 6, ε̃ = (1 + w) ε(x, c) − w ε(x, ∅). Several: the
    conjunction of Liu et al. 2022 ("Compositional Visual Generation with Composable Diffusion
    Models", Sec. 4), a sum of the conditions' guided scores, i.e. sampling from a product of
    experts ∝ p(x) Π_i [p(c_i | x)]^{1+w}.
    """
    eps = eps_uncond.clone()
    for eps_c in eps_conds:
        eps = eps + (1.0 + w) * (eps_c - eps_uncond)
    return eps


class ClassifierFreeGuidance:
    """A class-conditional :class:`ModelDenoiser` guided towards ``labels`` with scale ``w``.

    ``labels``: one entry per condition (an int for every sample, or a ``(B,)`` tensor); several
    entries compose the conditions (:func:`guided_eps`). The unconditional and conditional
    predictions come from one batched network call. x̂_0 is clipped after guidance, as in the
    reference samplers.
    """

    def __init__(self, denoiser: ModelDenoiser, labels: Sequence[Tensor | int], w: float):
        self.base = denoiser
        self.schedule = denoiser.schedule
        self.labels = list(labels)
        self.w = float(w)
        self.null = _num_classes(denoiser)
        if not self.labels:
            raise DifflabError("classifier-free guidance needs at least one class to guide towards.")

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        b, n = x_t.shape[0], len(self.labels)
        device = x_t.device
        ys = [torch.full((b,), self.null, dtype=torch.long, device=device)]
        ys += [torch.as_tensor(y, device=device).long().expand(b) for y in self.labels]
        pred = self.base.predict(x_t.repeat(n + 1, *([1] * (x_t.ndim - 1))), t.repeat(n + 1), torch.cat(ys))
        eps_u, *eps_c = pred.eps.chunk(n + 1)
        eps = guided_eps(eps_u, eps_c, self.w)
        x0 = process.eps_to_x0(self.schedule, x_t, t, eps)
        return self.base.clip(x_t, t, Prediction(eps=eps, x0=x0))


def _num_classes(denoiser: ModelDenoiser) -> int:
    k = getattr(denoiser.model, "num_classes", None)
    if not k:
        raise DifflabError("this model is unconditional (trained without classes); classifier-free guidance and "
                           "--class need a class-conditional model (model.num_classes in its config).")
    return int(k)


def check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    """Class ids as a list of ints, each in 0..num_classes-1, else a clear error."""
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int):
            raise DifflabError(f"class ids must be integers, got {c!r}.")
        if not 0 <= c < num_classes:
            raise DifflabError(f"class {c} is out of range: this model knows classes 0..{num_classes - 1}.")
        out.append(c)
    return out


def conditional_denoiser(denoiser: ModelDenoiser, num: int, classes: Sequence[int] | None = None,
                         guidance: str | None = None, scale: float = 0.0, compose: bool = False):
    """The denoiser that samples ``num`` examples of ``classes``.

    Without ``compose``, sample i gets class ``classes[i % len(classes)]``; with it, every sample
    is conditioned on all of them at once. ``guidance``: None (conditional model at w = 0, or the
    unconditional model when no class is given) or "cfg" (classifier-free guidance with w = ``scale``).
    """
    if guidance not in (None, "none", "cfg"):
        raise DifflabError(f"guidance must be 'cfg' or none, got {guidance!r}.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise DifflabError(f"the guidance scale must be a finite number, got {scale!r}.")
    if guidance == "none":
        guidance = None
    if not classes:
        if guidance is not None:
            raise DifflabError("guidance needs the class to guide towards (--class or --classes).")
        if compose:
            raise DifflabError("--compose needs at least two classes (--classes 3,7).")
        return denoiser
    classes = check_classes(list(classes), _num_classes(denoiser))
    if compose:
        if len(classes) < 2:
            raise DifflabError("--compose needs at least two classes (--classes 3,7).")
        return ClassifierFreeGuidance(denoiser, classes, scale if guidance == "cfg" else 0.0)
    per_sample = torch.tensor([classes[i % len(classes)] for i in range(num)], dtype=torch.long)
    if guidance == "cfg":
        return ClassifierFreeGuidance(denoiser, [per_sample], scale)
    return denoiser.with_labels(per_sample)
