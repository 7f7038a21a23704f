"""Guidance: steering a class-conditional denoiser towards the classes asked for.

Classifier-free guidance (Ho & Salimans 2022) needs no extra network: the model is trained with
its label dropped to a null label some of the time, so one network gives both ε(x_t, c) and the
unconditional ε(x_t, ∅). Every guided denoiser here is again a :class:`~difflab.denoiser.Denoiser`,
so every sampler runs it unchanged.

Scale convention: ``w`` as in Ho & Salimans 2022, Eq. 6 — w = 0 is the plain conditional model,
w > 0 guides harder. (diffusers' ``guidance_scale`` is 1 + w.)

Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis",
Sec. 4) adds the gradient of a noise-aware classifier log p_φ(y | x_t) (:mod:`difflab.models.classifier`,
trained by ``difflab train-classifier``) to the score, with scale s as in the paper: s = 1 samples
p(x | y) if the classifier is exact, s > 1 sharpens towards p(x) p(y | x)^s. It works with
unconditional and class-conditional models alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from . import process
from .denoiser import Preconditioning, ModelDenoiser, Prediction
from .errors import DifflabError
from .schedules import as_time

Tensor = torch.Tensor

__all__ = ["guided_eps", "ClassifierFreeGuidance", "ClassifierGuidance", "AncestralClassifierGuidance",
           "conditional_denoiser", "check_classes"]


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
        self.inner = denoiser
        self.schedule = denoiser.schedule
        self.labels = list(labels)
        self.w = float(w)
        _null_condition(denoiser, 1, None)  # refuses an unconditional model
        if not self.labels:
            raise DifflabError("classifier-free guidance needs at least one class to guide towards.")

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        b, n = x_t.shape[0], len(self.labels)
        device = x_t.device
        ys = [_null_condition(self.inner, b, device)]
        ys += [_per_sample(torch.as_tensor(y, device=device).long(), b) for y in self.labels]
        pred = self.inner.predict(x_t.repeat(n + 1, *([1] * (x_t.ndim - 1))), t.repeat(n + 1), torch.cat(ys))
        eps_u, *eps_c = pred.eps.chunk(n + 1)
        eps = guided_eps(eps_u, eps_c, self.w)
        if getattr(self.schedule, "zero_terminal_snr", False):  # the same affine combination of the x̂_0's: where
            x0_u, *x0_c = pred.x0.chunk(n + 1)                    # ᾱ_t = 0, ε̂ implies no x̂_0 (Lin et al. 2024)
            x0 = guided_eps(x0_u, x0_c, self.w)
        else:
            x0 = process.eps_to_x0(self.schedule, x_t, t, eps)
        # a learned variance comes from the (first) conditional branch, as in GLIDE's guided sampler
        v_raw = None if pred.v_raw is None else pred.v_raw.chunk(n + 1)[1]
        return self.inner.clip(x_t, t, Prediction(eps=eps, x0=x0, v_raw=v_raw))


class ClassifierGuidance:
    """Classifier guidance in its ε form (Dhariwal & Nichol 2021, Algorithm 2, "classifier guided DDIM"):

        ε̂'(x_t) = ε̂(x_t) − s σ_t ∇_{x_t} Σ_i log p_φ(y_i | x_t),

    σ_t = √(1 − ᾱ_t) for VP schedules, i.e. the score −ε̂/σ_t gains s ∇ log p_φ(y | x_t). x̂_0 is
    recomputed from ε̂'. Being a denoiser, it guides every sampler.

    ``denoiser``: any denoiser (an unconditional model, a class-conditional one already given its
    labels, or another guided wrapper); its ε̂ and x̂_0 are taken as they come (clipped, if it clips),
    and x̂_0 is not clipped again after guidance, as in the paper's code. ``classifier``: a callable
    ``classifier(x_in, time) -> logits (B, K)`` fed what the diffusion network is fed, x_t scaled by
    the schedule's input scale and the schedule's model time (a :class:`~difflab.models.classifier.NoisyClassifier`
    trained on the same schedule). ``labels``: one entry per condition (an int, or a ``(B,)`` tensor);
    several entries add their gradients (a product of experts p(x) Π_i p(y_i | x)^s). ``scale``: s.
    """

    def __init__(self, denoiser, classifier, labels: Sequence[Tensor | int], scale: float):
        self.inner = denoiser
        self.schedule = denoiser.schedule
        self.classifier = classifier
        self.labels = list(labels)
        self.scale = float(scale)
        if not self.labels:
            raise DifflabError("classifier guidance needs at least one class to guide towards.")

    def grad_log_prob(self, x_t: Tensor, t) -> Tensor:
        """∇_{x_t} Σ_i log p_φ(y_i | x_t) (log-softmax of the logits), per example; computed with
        gradients on even inside the samplers' ``torch.no_grad``."""
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        b = x_t.shape[0]
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logits = Preconditioning(self.schedule).call(self.classifier, x, t)
            logp = torch.log_softmax(logits, dim=-1)
            total = logp.new_zeros(())
            for y in self.labels:
                y = torch.as_tensor(y, device=x.device).long().expand(b)
                total = total + logp.gather(1, y[:, None]).sum()
            (grad,) = torch.autograd.grad(total, x)
        return grad.detach()

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        pred = self.inner(x_t, t)
        if self.scale == 0:
            return pred
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        eps = pred.eps - self.scale * process.sigma(self.schedule, t, x_t) * self.grad_log_prob(x_t, t)
        x0 = process.eps_to_x0(self.schedule, x_t, t, eps)
        if getattr(self.schedule, "zero_terminal_snr", False):  # at ᾱ_t = 0, pure noise, p(y | x_t) is flat and
            x0 = torch.where(process.alpha(self.schedule, t, x_t) == 0, pred.x0, x0)  # x̂_0 stays unguided
        guided = dataclasses.replace(pred, eps=eps, x0=x0)
        clip = _clipper(self.inner)
        # x̂_0 = (x_t − σ_t ε̂')/α_t multiplies the shift by σ_t/α_t, thousands at the first steps of a
        # cosine schedule; a model that samples with clipped x̂_0 gets the guided x̂_0 clipped too
        # (the paper's code leaves it unclipped, which saturates small images at any scale)
        return guided if clip is None else clip(x_t, t, guided)


def _clipper(denoiser):
    """The ``clip(x_t, t, pred)`` of the model under a (possibly wrapped) denoiser, or None."""
    while denoiser is not None:
        if callable(getattr(denoiser, "clip", None)) and getattr(denoiser, "clip_x0", None) is not None:
            return denoiser.clip
        denoiser = getattr(denoiser, "inner", None)
    return None


class AncestralClassifierGuidance(ClassifierGuidance):
    """Classifier guidance in its ancestral form (Dhariwal & Nichol 2021, Algorithm 1): the denoiser's
    predictions are left alone and the mean of each ancestral step is shifted,

        μ' = μ(x_t) + s Σ ∇_{x_t} Σ_i log p_φ(y_i | x_t),

    Σ being the variance of the step. Only the ``ddpm`` sampler applies it (it calls :meth:`mean_shift`
    when a denoiser has one, on every step that adds noise; the last step, to t = 0, adds neither noise
    nor shift); with any other sampler use :class:`ClassifierGuidance`.
    """

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        return self.inner(x_t, t)

    def mean_shift(self, x_t: Tensor, t, variance: Tensor) -> Tensor:
        """s Σ ∇ log p_φ(y | x_t), to add to the mean of the step from x_t whose variance is ``variance``."""
        if self.scale == 0:
            return torch.zeros_like(x_t)
        return self.scale * variance * self.grad_log_prob(x_t, t)


def _null_condition(denoiser: ModelDenoiser, batch: int, device) -> Tensor:
    """The null condition for ``batch`` samples: the null label K of a class-conditional network, or the
    network's own (a text-conditioned one's empty prompt, :meth:`~difflab.models.text_unet.TextConditionedUNet.null_condition`)."""
    null = getattr(getattr(denoiser, "model", None), "null_condition", None)
    if null is not None:
        return null(batch, device)
    return torch.full((batch,), _num_classes(denoiser), dtype=torch.long, device=device)


def _per_sample(y: Tensor, batch: int) -> Tensor:
    """A condition for every sample: one label broadcast to (B,), or per-sample labels / prompts as they are."""
    return y.expand(batch) if y.ndim <= 1 and y.numel() == 1 else y


def _num_classes(denoiser: ModelDenoiser) -> int:
    k = getattr(getattr(denoiser, "model", None), "num_classes", None)
    if not k:
        raise DifflabError("this model is unconditional (trained without classes); classifier-free guidance and "
                           "⟨classes⟩ need a class-conditional model (model.num_classes in its config), or else "
                           "classifier guidance (⟨guidance⟩ classifier with a ⟨classifier⟩).")
    return int(k)


def check_classes(classes: Sequence[int], num_classes: int, who: str = "this model") -> list[int]:
    """Class ids as a list of ints, each in 0..num_classes-1, else a clear error."""
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int):
            raise DifflabError(f"class ids must be integers, got {c!r}.")
        if not 0 <= c < num_classes:
            raise DifflabError(f"class {c} is out of range: {who} knows classes 0..{num_classes - 1}.")
        out.append(c)
    return out


def conditional_denoiser(denoiser: ModelDenoiser, num: int, classes: Sequence[int] | None = None,
                         guidance: str | None = None, scale: float = 0.0, compose: bool = False,
                         classifier=None, ancestral: bool = False):
    """The denoiser that samples ``num`` examples of ``classes``.

    Without ``compose``, sample i gets class ``classes[i % len(classes)]``; with it, every sample
    is conditioned on all of them at once. ``guidance``: None (conditional model at w = 0, or the
    unconditional model when no class is given), "cfg" (classifier-free guidance with w = ``scale``)
    or "classifier" (classifier guidance with s = ``scale`` by ``classifier``, a network
    ``classifier(x_in, time) -> logits`` with a ``num_classes`` attribute; a class-conditional model
    gets the labels too). ``ancestral``: classifier guidance in the form of Algorithm 1 (shifting the
    ddpm sampler's mean) instead of Algorithm 2 (shifting ε̂, for every sampler).
    """
    if guidance not in (None, "none", "cfg", "classifier"):
        raise DifflabError(f"guidance must be 'cfg', 'classifier' or none, got {guidance!r}.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise DifflabError(f"the guidance scale must be a finite number, got {scale!r}.")
    if guidance == "none":
        guidance = None
    if classifier is not None and guidance != "classifier":
        raise DifflabError("a ⟨classifier⟩ was given but ⟨guidance⟩ is not 'classifier'; set ⟨guidance⟩ to classifier "
                           "to use it.")
    if guidance == "classifier" and classifier is None:
        raise DifflabError("classifier guidance needs a noise-aware ⟨classifier⟩ (a run of "
                           "difflab train-classifier).")
    if not classes:
        if guidance is not None:
            raise DifflabError("guidance needs the class to guide towards (⟨classes⟩).")
        if compose:
            raise DifflabError("⟨compose⟩ needs at least two ⟨classes⟩ (3,7, say).")
        return denoiser
    if guidance == "classifier":
        return _classifier_guided(denoiser, num, list(classes), scale, compose, classifier, ancestral)
    classes = check_classes(list(classes), _num_classes(denoiser))
    if compose:
        if len(classes) < 2:
            raise DifflabError("⟨compose⟩ needs at least two ⟨classes⟩ (3,7, say).")
        return ClassifierFreeGuidance(denoiser, classes, scale if guidance == "cfg" else 0.0)
    per_sample = torch.tensor([classes[i % len(classes)] for i in range(num)], dtype=torch.long)
    if guidance == "cfg":
        return ClassifierFreeGuidance(denoiser, [per_sample], scale)
    return denoiser.with_labels(per_sample)


def _classifier_guided(denoiser, num: int, classes: list, scale: float, compose: bool, classifier, ancestral: bool):
    """:func:`conditional_denoiser` for guidance="classifier"."""
    k = getattr(classifier, "num_classes", None)
    if not k:
        raise DifflabError("the classifier must say how many classes it predicts (a num_classes attribute).")
    classes = check_classes(classes, int(k), "the classifier")
    model_k = getattr(getattr(denoiser, "model", None), "num_classes", None)
    if model_k and int(model_k) != int(k):
        raise DifflabError(f"the classifier predicts {k} classes but the class-conditional model knows {model_k}; "
                           "use a classifier trained on the model's classes.")
    if compose and len(classes) < 2:
        raise DifflabError("⟨compose⟩ needs at least two ⟨classes⟩ (3,7, say).")
    if compose:
        labels = list(classes)
        base = ClassifierFreeGuidance(denoiser, classes, 0.0) if model_k else denoiser
    else:
        per_sample = torch.tensor([classes[i % len(classes)] for i in range(num)], dtype=torch.long)
        labels = [per_sample]
        base = denoiser.with_labels(per_sample) if model_k else denoiser
    kind = AncestralClassifierGuidance if ancestral else ClassifierGuidance
    return kind(base, classifier, labels, scale)
