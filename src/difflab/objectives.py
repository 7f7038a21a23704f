"""Training objectives (Ho et al. 2020, Sec. 3.4; Salimans & Ho 2022 for v)."""

from __future__ import annotations

from typing import Callable

import torch

from . import process
from .errors import DifflabError
from .random import randn
from .schedules import Schedule

Tensor = torch.Tensor


def uniform_timesteps(schedule: Schedule, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ Uniform{1, ..., T} for a discrete schedule (DDPM Algorithm 1, line 3); t ~ Uniform(t_min, 1)
    for a continuous SDE (Song et al. 2021, Eq. 7, with ε = t_min)."""
    where = generator.device if generator is not None else None  # draw where the generator lives (CPU or CUDA)
    if getattr(schedule, "discrete", False):
        return torch.randint(1, schedule.T + 1, (batch,), generator=generator, device=where).to(device)
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=where)
    return (schedule.t_min + (schedule.t_max - schedule.t_min) * u).to(device)


def lognormal_timesteps(schedule, batch: int, generator: torch.Generator | None = None, device=None,
                        p_mean: float = -1.2, p_std: float = 1.2) -> Tensor:
    """The times of σ = σ_t/α_t ~ exp(N(P_mean, P_std²)), EDM's training noise distribution (Karras et al. 2022,
    Table 1: P_mean = −1.2, P_std = 1.2), mapped through the schedule's log-SNR λ = −2 ln σ and kept inside
    [t_min, t_max]. For continuous schedules."""
    where = generator.device if generator is not None else None
    ln_sigma = p_mean + p_std * torch.randn(batch, generator=generator, dtype=torch.float64, device=where)
    t = schedule.t_from_lambda(-2 * ln_sigma.cpu())
    return t.clamp(schedule.t_min, schedule.t_max).to(device)


def consistency_timesteps(schedule, batch: int, generator: torch.Generator | None = None, device=None, *, step: int,
                          total_steps: int) -> tuple[Tensor, Tensor]:
    """Neighbouring times (t_i, t_{i+1}) per example for consistency training at training step ``step`` of
    ``total_steps``: the grid of :func:`difflab.consistency.discretization_steps` Karras levels (iCT's curriculum),
    the pair i drawn from iCT's discretized log-normal (:func:`difflab.consistency.level_probabilities`)."""
    from .consistency import discretization_steps, level_probabilities, level_times, scaled_levels

    times = level_times(schedule, discretization_steps(step, total_steps))
    p = level_probabilities(scaled_levels(schedule, times)[1])
    i = torch.multinomial(p, batch, replacement=True, generator=generator)
    return times[i].to(device), times[i + 1].to(device)


def antithetic_timesteps(schedule, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t_i = (u + i/B) mod 1 with one u ~ U(0, 1): the low-discrepancy times of variational diffusion models, which
    cut the variance of the bound's estimate (Kingma et al. 2021, Appx. I.1), kept inside [t_min, t_max]."""
    where = generator.device if generator is not None else None
    u = torch.rand(1, generator=generator, dtype=torch.float64, device=where).cpu()
    t = torch.remainder(u + torch.arange(batch, dtype=torch.float64) / batch, 1.0)
    return t.clamp(schedule.t_min, schedule.t_max).to(device)


def logit_normal_timesteps(schedule, batch: int, generator: torch.Generator | None = None, device=None,
                           mean: float = 0.0, std: float = 1.0) -> Tensor:
    """t = sigmoid(n), n ~ N(mean, std²): the logit-normal times of rectified-flow training (Esser et al. 2024,
    "Scaling Rectified Flow Transformers", Sec. 3.1, m = 0, s = 1), kept inside [t_min, t_max]."""
    where = generator.device if generator is not None else None
    n = mean + std * torch.randn(batch, generator=generator, dtype=torch.float64, device=where)
    return torch.sigmoid(n).clamp(schedule.t_min, schedule.t_max).to(device)


def ot_pairing(x0: Tensor, eps: Tensor) -> Tensor:
    """The noise ``eps`` reordered so that noise i goes with data i under the exact optimal-transport plan of the
    minibatch for the squared Euclidean cost, a permutation for two uniform empirical measures (Tong et al. 2024,
    "Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport", Sec. 3.2 and
    Algorithm 1; Pooladian et al. 2023). Solved by the Hungarian method (scipy's ``linear_sum_assignment``)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x0.flatten(1).double().cpu(), eps.flatten(1).double().cpu()).pow(2)
    rows, cols = linear_sum_assignment(cost.numpy())
    order = torch.empty(len(rows), dtype=torch.long)
    order[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return eps[order.to(eps.device)]


def l_simple(denoiser, x0: Tensor, generator: torch.Generator | None = None, t: Tensor | None = None,
             eps: Tensor | None = None, y: Tensor | None = None, **conditioning) -> Tensor:
    """L_simple = E_{t, x_0, ε} ‖target − f_θ(x_t, t)‖², the per-example mean over dimensions
    (DDPM Eq. 14, Algorithm 1), for the network of a :class:`~difflab.denoiser.ModelDenoiser`, called through
    its preconditioning. The target is ε, x_0 or v = α_t ε − σ_t x_0 by its parameterization. For a continuous
    SDE with the ε target this is denoising score matching with weight λ(t) = σ_t² (Song et al. 2021, Eq. 7:
    s_θ = −ε̂/σ_t). Returns the per-example losses (B,). ``t`` and ``eps`` may be given (the distributed trainer
    draws them for the global batch and passes each rank its slice). ``y``: labels of a class-conditional model;
    ``conditioning``: extra network inputs (SR3's ``cond`` image).
    """
    schedule = denoiser.schedule
    if t is None:
        t = uniform_timesteps(schedule, x0.shape[0], generator, x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = process.q_sample(schedule, x0, t, eps)
    output = denoiser.network(x_t, t, y, **conditioning)
    goal = denoiser.preconditioning.target(x0, t, eps)
    output = output.to(goal.dtype)  # a bf16 autocast output is compared in the target's precision
    if denoiser.parameterization == "score":  # weight λ(σ) = σ² (Song & Ermon 2019, Eq. 6), so every level counts alike
        return (process.sigma(schedule, t, x0) * (output - goal)).pow(2).flatten(1).mean(1)
    return (output - goal).pow(2).flatten(1).mean(1)


#: The training objectives by the name ``diffusion.loss`` gives: each maps (the preconditioned network, x_0, t, ε,
#: labels, the diffusion section, conditioning) to per-example losses. A new objective is a function and a line.
LOSSES: dict[str, Callable] = {}
#: the objectives that train a learned variance through the variational bound (Nichol & Dhariwal 2021): they need
#: a discrete schedule and a learned-variance network, and draw t from the run's timestep sampler
LEARNED_VARIANCE: set[str] = set()


def register(name: str, learned_variance: bool = False):
    """Register the decorated function as the training objective ``name`` (see :data:`LOSSES`)."""
    def wrap(fn):
        LOSSES[name] = fn
        if learned_variance:
            LEARNED_VARIANCE.add(name)
        return fn
    return wrap


def min_snr(snr: Tensor, gamma: float) -> Tensor:
    """min(SNR, γ): the min-SNR-γ weight of the x_0 error (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy", Eq. 8)."""
    return snr.clamp(max=gamma)


def soft_min_snr(snr: Tensor, gamma: float) -> Tensor:
    """SNR γ/(SNR + γ): the smooth min-SNR weight of the x_0 error (Crowson et al. 2024, "Scalable High-Resolution
    Pixel-Space Image Synthesis with Hourglass Diffusion Transformers", Sec. 4.2)."""
    return snr * gamma / (snr + gamma)


def edm_weight(snr: Tensor, sigma_data: float) -> Tensor:
    """λ(σ) = (σ² + σ_d²)/(σ σ_d)² with σ² = 1/SNR, EDM's weight of the x_0 error (Karras et al. 2022, "Elucidating
    the Design Space", Table 1 and Eq. 8; σ_d = ``sigma_data``)."""
    sigma2 = 1 / snr
    return (sigma2 + sigma_data**2) / (sigma2 * sigma_data**2)


def likelihood_weight(schedule, t: Tensor, like: Tensor) -> Tensor:
    """−dSNR/dt = −λ'(t) SNR(t), the x_0-error weight that makes the loss the continuous-time variational bound
    (Kingma et al. 2021, "Variational Diffusion Models", Eq. 17: −½ λ'(t) ‖ε − ε̂‖² per unit time; Song et al. 2021,
    "Maximum Likelihood Training of Score-Based Diffusion Models", Theorem 1, λ(t) = g(t)², the same weight).
    dSNR/dt is a central difference in float64 (in timesteps for a discrete schedule), finite where SNR = 0."""
    t = torch.as_tensor(t).double().cpu().flatten()
    h = 1e-4 if not getattr(schedule, "discrete", False) else 0.5
    lo, hi = (t - h).clamp(min=schedule.t_min / 2), (t + h).clamp(max=schedule.t_max)
    slope = (_snr(schedule, hi) - _snr(schedule, lo)) / (hi - lo)
    return (-slope).to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def _snr(schedule, t: Tensor) -> Tensor:
    """SNR = α_t²/σ_t² in float64 (0 where ᾱ_T = 0)."""
    return (schedule.alpha(t) / schedule.sigma(t)) ** 2


#: the loss weightings (``diffusion.weighting``); ``none`` leaves the parameterization's own squared error
#: unweighted (L_simple for ε; EDM's λ(σ) for the edm parameterization, whose output is scaled by 1/c_out)
WEIGHTINGS = ("none", "min-snr", "soft-min-snr", "edm", "likelihood")


def x0_weight(schedule, t: Tensor, like: Tensor, weighting: str, gamma: float = 5.0, sigma_data: float = 0.5) -> Tensor:
    """The weight of ``weighting`` on the x_0 error ‖x̂_0 − x_0‖² per example, float64, shaped (B, 1, ...) like
    ``like``. SNR = α_t²/σ_t²."""
    a, s = process.alpha_sigma64(schedule, t, like)
    snr = a**2 / s**2
    if weighting == "min-snr":
        return min_snr(snr, gamma)
    if weighting == "soft-min-snr":
        return soft_min_snr(snr, gamma)
    if weighting == "edm":
        return edm_weight(snr, sigma_data)
    if weighting == "likelihood":
        return likelihood_weight(schedule, t, a)
    raise DifflabError(f"⟨diffusion.weighting⟩ must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}.")


def loss_weight(preconditioning, t: Tensor, like: Tensor, weighting: str, gamma: float = 5.0,
                sigma_data: float = 0.5) -> Tensor:
    """The per-example weight (B,) of the squared error in the space of the network's output, so that the weighted
    loss is :func:`x0_weight` times the x_0 error it implies: the x_0 weight divided by the preconditioning's
    :meth:`~difflab.denoiser.Preconditioning.x0_error_scale`. For ε that is min(SNR, γ)/SNR under min-SNR, for
    v min(SNR, γ)/(SNR + 1) (Hang et al. 2023, Sec. 3.4; the v form diffusers once got wrong, #5654)."""
    w = x0_weight(preconditioning.schedule, t, like, weighting, gamma, sigma_data)
    return (w / preconditioning.x0_error_scale(t, like)).flatten()


@register("simple")
def simple(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None, *, settings: dict,
           **conditioning) -> Tensor:
    """L_simple per example (:func:`l_simple`), weighted per example by ``settings["weighting"]`` when it is not
    ``none`` (:func:`loss_weight`; γ = ``settings["min_snr_gamma"]``, σ_d = ``settings["sigma_data"]``)."""
    losses = l_simple(denoiser, x0, t=t, eps=eps, y=y, **conditioning)
    weighting = settings.get("weighting", "none")
    if weighting == "none":
        return losses
    w = loss_weight(denoiser.preconditioning, t, x0, weighting, settings["min_snr_gamma"], settings["sigma_data"])
    return losses * w.to(losses.dtype)


@register("vdm")
def vdm(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None, *, settings: dict,
        **conditioning) -> Tensor:
    """The continuous-time variational bound in bits per dimension per example, for an ε network on a learned
    schedule (Kingma et al. 2021, Eq. 17 with the prior and reconstruction terms;
    :func:`difflab.continuous_bound.vlb_bits_per_dim`); the schedule's shape learns to cut the estimate's variance."""
    from .continuous_bound import vlb_bits_per_dim

    return vlb_bits_per_dim(denoiser, x0, t, eps, y, **conditioning)[0]


@register("hybrid", learned_variance=True)
def hybrid(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None, *, settings: dict,
           **conditioning) -> Tensor:
    """L_hybrid = L_simple + λ L_vlb per example (Nichol & Dhariwal 2021, Eq. 16; λ = ``settings["vlb_weight"]``)."""
    from .variational_bound import hybrid_losses

    return hybrid_losses(denoiser, x0, t, noise=eps, y=y, lam=settings["vlb_weight"], objective="hybrid",
                         **conditioning)["loss"]


@register("vlb", learned_variance=True)
def vlb(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None, *, settings: dict,
        **conditioning) -> Tensor:
    """L_vlb alone per example, gradients to the mean and the variance (Nichol & Dhariwal 2021, Sec. 3.3)."""
    from .variational_bound import hybrid_losses

    return hybrid_losses(denoiser, x0, t, noise=eps, y=y, objective="vlb", **conditioning)["loss"]


def consistency_loss(denoiser, x_hi: Tensor, t_hi: Tensor, x_lo: Tensor, t_lo: Tensor, y: Tensor | None = None,
                     **conditioning) -> Tensor:
    """λ(σ̃_lo) d(f_θ(x_hi, t_hi), sg f_θ(x_lo, t_lo)) per example: the consistency loss of a pair of neighbouring points
    of one trajectory (Song et al. 2023, Eq. 7 and 10), with the model itself under a stop-gradient as the target
    network (Song & Dhariwal 2023, iCT Sec. 3.1, θ⁻ = θ), d the pseudo-Huber metric and λ = 1/(σ̃_hi − σ̃_lo)
    (:mod:`difflab.consistency`). Both evaluations see the same dropout masks (the random state is replayed), so the
    target differs from the output only by where it is evaluated."""
    from .consistency import pair_weight, pseudo_huber, scaled_levels

    pre = denoiser.preconditioning
    devices = [x_hi.device.index or 0] if x_hi.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the target's dropout replays the output's
        f_hi = pre.prediction(x_hi, t_hi, denoiser.network(x_hi, t_hi, y, **conditioning)).x0
    with torch.no_grad():
        f_lo = pre.prediction(x_lo, t_lo, denoiser.network(x_lo, t_lo, y, **conditioning)).x0
    weight = pair_weight(scaled_levels(denoiser.schedule, t_lo)[1], scaled_levels(denoiser.schedule, t_hi)[1])
    return weight.to(f_hi.device, torch.float32) * pseudo_huber(f_hi, f_lo)


@register("consistency")
def consistency(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None, *, settings: dict,
                t_next: Tensor, **conditioning) -> Tensor:
    """Consistency training per example (Song et al. 2023, Algorithm 3, with the improvements of Song & Dhariwal
    2023): :func:`consistency_loss` of x_{t_next} and x_t on one noise, x_t = α_t x_0 + σ_t ε, the one-sample estimate
    of the ODE step between the neighbouring levels t < t_next that needs no teacher."""

    def point(times: Tensor) -> Tensor:
        a, s = process.alpha_sigma64(denoiser.schedule, times, x0)
        return (a * x0.double() + s * eps.double()).to(x0.dtype)

    return consistency_loss(denoiser, point(t_next), t_next, point(t), t, y, **conditioning)
