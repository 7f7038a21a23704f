"""The denoiser protocol: the one interface every sampler sees.

A denoiser answers "given x_t at timestep t, what are ε̂ and x̂_0?". A trained network in any
parameterization, a guided wrapper, or an exact oracle all look the same to a sampler, so no
sampler holds per-model code. A denoiser exposes the :class:`~difflab.schedules.Schedule` it was
trained on, so samplers can read ᾱ_t without being told twice; a denoiser that wraps another exposes it as
``inner``.

:class:`Preconditioning` is the one place where a network meets a noise level, for sampling and training alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from . import process
from .errors import DifflabError
from .schedules import Schedule, as_time

Tensor = torch.Tensor


@dataclass
class Prediction:
    """What a denoiser predicts at (x_t, t): the noise ε̂ and the clean sample x̂_0, and, from a
    network with a learned variance, its raw variance output ``v_raw`` (None otherwise): the
    reverse-step variance is exp(v log β + (1 − v) log β̃) with v = (v_raw + 1)/2 (Nichol & Dhariwal
    2021, Eq. 15; :func:`difflab.variational_bound.interpolate_log_variance`)."""

    eps: Tensor
    x0: Tensor
    v_raw: Tensor | None = None


@runtime_checkable
class Denoiser(Protocol):
    schedule: Schedule

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction: ...


class Preconditioning:
    """How a network meets a noise level: the one place where the input x_t is scaled (c_in), the time is
    turned into what the network reads (c_noise), labels or context and conditioning images are passed, and
    the raw output is read as a prediction. Karras et al. 2022 ("Elucidating the Design Space", Table 1)
    write every model family as D(x; σ) = c_skip x + c_out F(c_in x; c_noise); here c_in and c_noise come
    from the schedule (:meth:`~difflab.schedules.Schedule.input_scale`, ``model_time``) and the output's
    ``parameterization`` (ε, x_0, v, score) plays the part of c_skip and c_out. Losses, the variational
    bound, classifier guidance, the classifier trainer and every :class:`ModelDenoiser` call networks
    through it, so training and sampling cannot disagree about how a network is called (as k-diffusion's
    ``get_scalings`` serves both its ``loss`` and ``forward``).

    ``learned_variance``: the network outputs 2C channels for C data channels (Nichol & Dhariwal 2021,
    Sec. 3.1): the first C are the prediction in ``parameterization``, the last C the raw variance ``v_raw``.
    """

    def __init__(self, schedule: Schedule, parameterization: str = "eps", learned_variance: bool = False):
        process.check_parameterization(parameterization)
        self.schedule = schedule
        self.parameterization = parameterization
        self.learned_variance = bool(learned_variance)

    def inputs(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(c_in(t) x_t, c_noise(t)): the network's input and the time it is told, for times ``t`` of shape (B,)."""
        return process.model_input(self.schedule, x_t, t), self.schedule.model_time(t).to(x_t.device)

    def call(self, network, x_t: Tensor, t: Tensor, labels: Tensor | int | None = None, **conditioning) -> Tensor:
        """The raw output of ``network(c_in x_t, c_noise[, labels], **conditioning)`` (``t`` a scalar or (B,))."""
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        x_in, time = self.inputs(x_t, t)
        if labels is None:
            return network(x_in, time, **conditioning)
        y = torch.as_tensor(labels, device=x_t.device)
        return network(x_in, time, y.expand(x_t.shape[0]) if y.ndim == 0 else y, **conditioning)

    def split(self, output: Tensor, channels: int) -> tuple[Tensor, Tensor | None]:
        """(the prediction, v_raw or None) of a raw output."""
        return split_output(output, channels) if self.learned_variance else (output, None)

    def prediction(self, x_t: Tensor, t: Tensor, output: Tensor) -> Prediction:
        """ε̂ and x̂_0 (and v_raw) from a raw network output."""
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        output, v_raw = self.split(output, x_t.shape[1])
        eps, x0 = process.to_eps_x0(self.schedule, self.parameterization, x_t, t, output)
        return Prediction(eps=eps, x0=x0, v_raw=v_raw)

    def target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """What the prediction part of the output regresses onto for x_t = α_t x_0 + σ_t ε (DDPM Eq. 14 for ε)."""
        return process.target(self.schedule, self.parameterization, x0, t, eps)

    def x0_error_scale(self, t: Tensor, like: Tensor) -> Tensor:
        """‖output − target‖² per unit of the x_0 error it implies at the same x_t (float64, broadcast like
        ``like``): what a loss weighting divides its x_0-space weight by (:func:`difflab.process.x0_error_scale`)."""
        return process.x0_error_scale(self.schedule, self.parameterization, t, like)


class EDMPreconditioning(Preconditioning):
    """EDM's preconditioning (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
    Models", Table 1 and Eq. 7): in the scaled variables x̃ = x_t/α_t, σ = σ_t/α_t the denoiser is
    D(x̃; σ) = c_skip(σ) x̃ + c_out(σ) F(c_in(σ) x̃; c_noise(σ)) with

        c_skip = σ_d²/(σ² + σ_d²),  c_out = σ σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²),  c_noise = ¼ ln σ,

    σ_d = ``sigma_data`` the data's standard deviation. The network F regresses (x_0 − c_skip x̃)/c_out, which is
    D's x_0 error weighted by EDM's λ(σ) = (σ² + σ_d²)/(σ σ_d)² = 1/c_out² (Eq. 8)."""

    def __init__(self, schedule: Schedule, sigma_data: float = 0.5):
        if isinstance(sigma_data, bool) or not isinstance(sigma_data, (int, float)) or not sigma_data > 0:
            raise DifflabError(f"⟨diffusion.sigma_data⟩ (EDM's σ_data) must be a number > 0, got {sigma_data!r}.")
        self.schedule, self.parameterization, self.learned_variance = schedule, "edm", False
        self.sigma_data = float(sigma_data)

    def scalings(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(α_t, σ, c_skip, c_out, c_in, c_noise) per example, float64, shaped to broadcast against ``like``."""
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        a, sigma = process.alpha_sigma64(self.schedule, t, like)
        sigma = sigma / a
        sd2 = self.sigma_data ** 2
        root = (sigma**2 + sd2).sqrt()
        return a, sigma, sd2 / (sigma**2 + sd2), sigma * self.sigma_data / root, 1 / root, sigma.log() / 4

    #: the network reads NOISE_LABEL_SCALE · c_noise: difflab's sinusoidal time embedding is made for times on the
    #: scale of DDPM's 1..1000, and ¼ ln σ spans only about −1.6 .. 1.1 for σ in [0.002, 80]
    NOISE_LABEL_SCALE = 1000.0

    def inputs(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        a, _, _, _, c_in, c_noise = self.scalings(t, x_t)
        label = self.NOISE_LABEL_SCALE * c_noise.flatten()
        return (c_in / a).to(x_t.dtype) * x_t, label.to(device=x_t.device, dtype=torch.float32)

    def prediction(self, x_t: Tensor, t: Tensor, output: Tensor) -> Prediction:
        a, sigma, c_skip, c_out, _, _ = self.scalings(t, x_t)
        x_tilde = x_t.double() / a
        x0 = c_skip * x_tilde + c_out * output.double()
        return Prediction(eps=((x_tilde - x0) / sigma).to(x_t.dtype), x0=x0.to(x_t.dtype))

    def target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        _, sigma, c_skip, c_out, _, _ = self.scalings(t, x0)
        x_tilde = x0.double() + sigma * eps.double()
        return ((x0.double() - c_skip * x_tilde) / c_out).to(x0.dtype)

    def x0_error_scale(self, t: Tensor, like: Tensor) -> Tensor:
        """1/c_out² = λ(σ): F's error is D's x_0 error divided by c_out."""
        c_out = self.scalings(t, like)[3]
        return 1 / c_out**2


class ConsistencyPreconditioning(EDMPreconditioning):
    """A consistency model's parameterization (Song et al. 2023, "Consistency Models", Sec. 3 and Appendix C): EDM's
    form with the skip and output scalings shifted so that f(x̃; σ_min) = x̃ exactly (the boundary condition), σ_min
    the schedule's least noisy σ̃ (at t_min):

        c_skip = σ_d²/((σ − σ_min)² + σ_d²),  c_out = σ_d (σ − σ_min)/√(σ² + σ_d²),

    c_in and c_noise as EDM's. The prediction x̂_0 is the model's output f, the end of the ODE trajectory through x̃."""

    def __init__(self, schedule: Schedule, sigma_data: float = 0.5):
        super().__init__(schedule, sigma_data)
        self.parameterization = "consistency"
        t_min = torch.tensor(float(schedule.t_min), dtype=torch.float64)
        self.sigma_min = float(schedule.sigma(t_min) / schedule.alpha(t_min))

    def scalings(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        a, sigma, _, _, c_in, c_noise = super().scalings(t, like)
        sd2, shifted = self.sigma_data ** 2, sigma - self.sigma_min
        return a, sigma, sd2 / (shifted**2 + sd2), self.sigma_data * shifted / (sigma**2 + sd2).sqrt(), c_in, c_noise


class VelocityPreconditioning(Preconditioning):
    """A velocity network, the parameterization of flow matching (Lipman et al. 2023, Eq. 22; Liu et al. 2023):
    it regresses the path's time derivative u = α'_t x_0 + σ'_t ε (ε − x_0 on the straight path α = 1 − t, σ = t
    of :class:`~difflab.sde.FlowPath`), and (x̂_0, ε̂) solve [α σ; α' σ'] (x_0, ε) = (x_t, û). The derivatives
    α', σ' come from the schedule by a central difference in float64 (exact up to rounding for a straight path)."""

    def __init__(self, schedule: Schedule):
        super().__init__(schedule, "eps")
        self.parameterization = "velocity"

    def _coefficients(self, t: Tensor, like: Tensor):
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        t = t.double().cpu()
        h = 1e-6
        lo, hi = (t - h).clamp(min=0), (t + h).clamp(max=1)
        (a_lo, s_lo), (a_hi, s_hi) = process.alpha_sigma64(self.schedule, lo, like), process.alpha_sigma64(self.schedule, hi, like)
        width = (hi - lo).to(a_lo.device).reshape(a_lo.shape)
        a, s = process.alpha_sigma64(self.schedule, t, like)
        return a, s, (a_hi - a_lo) / width, (s_hi - s_lo) / width

    def prediction(self, x_t: Tensor, t: Tensor, output: Tensor) -> Prediction:
        a, s, da, ds = self._coefficients(t, x_t)
        det = a * ds - s * da
        x, u = x_t.double(), output.double()
        return Prediction(eps=((a * u - da * x) / det).to(x_t.dtype), x0=((ds * x - s * u) / det).to(x_t.dtype))

    def target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        _, _, da, ds = self._coefficients(t, x0)
        return (da * x0.double() + ds * eps.double()).to(x0.dtype)

    def x0_error_scale(self, t: Tensor, like: Tensor) -> Tensor:
        """(α' − σ' α/σ)²: at fixed x_t, ε̂ − ε = −(α/σ)(x̂_0 − x_0), so û − u = (α' − σ' α/σ)(x̂_0 − x_0)
        (1/t² on the straight path)."""
        a, s, da, ds = self._coefficients(t, like)
        return (da - ds * a / s) ** 2


def preconditioning(schedule: Schedule, parameterization: str = "eps", learned_variance: bool = False,
                    sigma_data: float = 0.5) -> Preconditioning:
    """The preconditioning a run's parameterization names: ``edm`` (:class:`EDMPreconditioning`), ``consistency``
    (:class:`ConsistencyPreconditioning`), ``velocity`` (:class:`VelocityPreconditioning`) or a plain
    prediction target (ε, x_0, v, score; :class:`Preconditioning`)."""
    if parameterization == "edm":
        if learned_variance:
            raise DifflabError("⟨diffusion.learned_variance⟩ needs an ε network, not EDM's preconditioning.")
        return EDMPreconditioning(schedule, sigma_data)
    if parameterization == "consistency":
        if learned_variance:
            raise DifflabError("⟨diffusion.learned_variance⟩ needs an ε network, not a consistency model.")
        return ConsistencyPreconditioning(schedule, sigma_data)
    if parameterization == "velocity":
        if learned_variance:
            raise DifflabError("⟨diffusion.learned_variance⟩ needs an ε network, not a velocity network.")
        return VelocityPreconditioning(schedule)
    return Preconditioning(schedule, parameterization, learned_variance)


#: every parameterization a run may name (``diffusion.parameterization``)
PARAMETERIZATIONS = (*process.PARAMETERIZATIONS, "edm", "velocity", "consistency")


def split_output(output: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """Split a learned-variance network output of 2C channels into (ε̂, v_raw) along dim 1 (IDDPM Sec. 3.1)."""
    if output.ndim < 2 or output.shape[1] != 2 * channels:
        raise DifflabError(f"a learned-variance model must output 2 x {channels} = {2 * channels} channels "
                           f"(eps, then v), got shape {tuple(output.shape)}.")
    return output[:, :channels], output[:, channels:]


class ModelDenoiser:
    """Wrap a network ``model(x_t, t) -> output`` trained with the given parameterization, called through its
    :class:`Preconditioning`. Gradients flow through it (likelihoods and losses need them); samplers run it
    under ``torch.no_grad``.

    ``clip_x0``: optional (low, high) range; x̂_0 is clamped into it and ε̂ recomputed from the
    clamped x̂_0, so both stay consistent (the "clipped" sampling of the DDPM and DDIM code).

    ``labels``: for a class-conditional network, the class of each sample ``(B,)`` (or one int for
    all), passed as ``model(x_t, t, labels)``; None leaves a conditional network at its null label.

    ``learned_variance``: see :class:`Preconditioning`; ``v_raw`` is passed on in :class:`Prediction`
    (samplers that need only ε̂ and x̂_0 ignore it).
    """

    def __init__(self, model: torch.nn.Module, schedule: Schedule, parameterization: str = "eps",
                 clip_x0: tuple[float, float] | None = None, labels: Tensor | int | None = None,
                 learned_variance: bool = False, sigma_data: float = 0.5):
        self.model = model
        self.preconditioning = preconditioning(schedule, parameterization, learned_variance, sigma_data)
        self.sigma_data = sigma_data
        self.schedule = schedule
        self.parameterization = parameterization
        self.clip_x0 = clip_x0
        self.labels = labels
        self.learned_variance = bool(learned_variance)

    def with_labels(self, labels: Tensor | int | None) -> "ModelDenoiser":
        """The same network and schedule, conditioned on other labels."""
        return ModelDenoiser(self.model, self.schedule, self.parameterization, self.clip_x0, labels,
                             self.learned_variance, self.sigma_data)

    def network(self, x_t: Tensor, t: Tensor, labels: Tensor | int | None = None, **conditioning) -> Tensor:
        """The network's raw output at (x_t, t), as losses read it."""
        return self.preconditioning.call(self.model, x_t, t, labels, **conditioning)

    def predict(self, x_t: Tensor, t: Tensor, labels: Tensor | int | None = None) -> Prediction:
        """ε̂ and x̂_0 of the network for ``labels``, before clipping."""
        return self.preconditioning.prediction(x_t, t, self.network(x_t, t, labels))

    def clip(self, x_t: Tensor, t: Tensor, pred: Prediction) -> Prediction:
        """Clamp x̂_0 into ``clip_x0`` and recompute ε̂ from it (no-op without a range)."""
        if self.clip_x0 is None:
            return pred
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        x0 = pred.x0.clamp(*self.clip_x0)
        return Prediction(eps=process.x0_to_eps(self.schedule, x_t, t, x0), x0=x0, v_raw=pred.v_raw)

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        return self.clip(x_t, t, self.predict(x_t, t, self.labels))


def build_network(config: dict) -> torch.nn.Module:
    """The freshly initialised network a run's config describes: its model, and, for a learned schedule
    (``diffusion.schedule: learned``, Kingma et al. 2021), the model with its monotone γ(t) beside it
    (:class:`~difflab.models.vdm.LearnedScheduleNetwork`), so the schedule trains and saves with the weights."""
    from .models import build_model

    network = build_model(config["model"])
    diff = config["diffusion"]
    if diff["schedule"] == "learned":
        from .models.vdm import LearnedScheduleNetwork, MonotoneGamma
        network = LearnedScheduleNetwork(network, MonotoneGamma(**diff["schedule_params"]))
    return network


def build_denoiser(model: torch.nn.Module, config: dict) -> ModelDenoiser:
    """The :class:`ModelDenoiser` a run's config describes: its schedule, parameterization and variance, and
    x̂_0 clipped to [−1, 1] for images (to the largest latent magnitude measured on the data for latent runs)
    when the config's ``sample.clip`` is on."""
    from . import schedules

    diff = config["diffusion"]
    if diff["schedule"] == "learned" and model is not None:  # the schedule the network carries (VDM)
        from .sde import LearnedSchedule
        schedule = LearnedSchedule.of(model, diff["schedule_params"])
    else:
        schedule = schedules.get(diff["schedule"], diff["T"], **diff["schedule_params"])
    clip = (-1.0, 1.0) if config["normalization"]["kind"] == "image" and config["sample"]["clip"] else None
    if "latent" in config:  # latents are clipped to the largest magnitude measured on the data (difflab.latent)
        c = config["latent"].get("clip")
        clip = (-c, c) if c and config["sample"]["clip"] else None
    return ModelDenoiser(model, schedule, diff["parameterization"], clip_x0=clip,
                         learned_variance=diff["learned_variance"], sigma_data=diff["sigma_data"])


#: what a wrapped function is told as its time (:func:`from_callable`)
TIME_CONVENTIONS = ("t", "index", "sigma")


class _Timed:
    """A function ``fn(x, time[, labels])`` told its time in its own convention instead of difflab's t."""

    def __init__(self, fn, schedule: Schedule, time: str):
        self.fn, self.schedule, self.time = fn, schedule, time

    def __call__(self, x: Tensor, t: Tensor, *labels) -> Tensor:
        if self.time == "index":
            t = t - 1
        elif self.time == "sigma":
            a, s = process.alpha_sigma64(self.schedule, t.double().cpu(), t)
            t = (s / a).to(device=x.device, dtype=x.dtype).flatten()
        out = self.fn(x, t, *labels)
        if not isinstance(out, Tensor) or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise DifflabError(f"the wrapped function must return a tensor shaped like its input {tuple(x.shape)}, "
                               f"got {got}.")
        return out


def from_callable(fn, schedule: Schedule | str = "linear", parameterization: str = "eps", time: str = "t",
                  clip_x0: tuple[float, float] | None = None, labels: Tensor | int | None = None,
                  T: int = 1000) -> ModelDenoiser:
    """A :class:`ModelDenoiser` around any network or function ``fn(x_t, time[, labels]) -> prediction``, so every
    sampler, guidance method, editing task and likelihood of difflab runs on it (as k-diffusion's ``external.py``
    wrappers bring foreign networks to its samplers).

    ``schedule``: the :class:`~difflab.schedules.Schedule` ``fn`` was trained with, or a name for
    :func:`difflab.schedules.get` with ``T`` steps. ``parameterization``: what ``fn`` predicts (``eps``, ``x0``, ``v``,
    ``score``). ``time``: what ``fn`` is told: ``t`` (difflab's timestep 1..T, or the continuous t), ``index`` (the
    table index t − 1 of diffusers' schedulers and of the DDPM/ADM reference code), or ``sigma`` (σ_t/α_t, the noise
    level of k-diffusion and EDM; ``fn`` still gets the variance-preserving x_t). ``clip_x0``: clamp x̂_0 into a range
    (images: (−1, 1)). ``labels``: passed to ``fn`` as its third argument when given.

    Example — a diffusers ``UNet2DModel`` trained with the DDPM linear schedule, sampled by difflab's DPM-Solver++::

        unet = diffusers.UNet2DModel.from_pretrained(folder)
        den = difflab.denoiser.from_callable(lambda x, k: unet(x, k).sample, "linear", "eps", time="index",
                                             clip_x0=(-1, 1))
        x0 = difflab.samplers.sample(den, (4, 3, 32, 32), sampler="dpmpp_2m", steps=20)
    """
    from . import schedules

    if not callable(fn):
        raise DifflabError(f"from_callable needs a function or network, got {type(fn).__name__}.")
    if time not in TIME_CONVENTIONS:
        raise DifflabError(f"unknown time convention {time!r}; expected one of {', '.join(TIME_CONVENTIONS)}.")
    if isinstance(schedule, str):
        schedule = schedules.get(schedule, T)
    if not hasattr(schedule, "alpha") or not hasattr(schedule, "model_time"):
        raise DifflabError(f"schedule must be a difflab schedule or its name, got {type(schedule).__name__}.")
    if time in ("index", "sigma") and not getattr(schedule, "discrete", False):
        raise DifflabError(f"time={time!r} is defined for discrete schedules (t = 1..T); a continuous one tells "
                           "the function its t.")
    if parameterization not in process.PARAMETERIZATIONS:
        raise DifflabError(f"unknown parameterization {parameterization!r}; a wrapped function predicts one of "
                           f"{', '.join(process.PARAMETERIZATIONS)}.")
    return ModelDenoiser(_Timed(fn, schedule, time), schedule, parameterization, clip_x0=clip_x0, labels=labels)
