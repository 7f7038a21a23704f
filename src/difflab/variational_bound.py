"""The variational bound of a discrete diffusion model, term by term, and the hybrid objective.

Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM), Sec. 3.3 and Eqs. 5, 13;
Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (IDDPM), Eqs. 4–7, 15, 16.

    L_vlb = L_0 + L_1 + ... + L_{T−1} + L_T                                       (IDDPM Eq. 4)
    L_T     = KL(q(x_T | x_0) ‖ N(0, I))                                          (IDDPM Eq. 7)
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)),  t = 2..T            (IDDPM Eq. 6)
    L_0     = −log p_θ(x_0 | x_1), a discretized Gaussian decoder                 (DDPM Eq. 13)

Timesteps run t = 1..T as in :mod:`difflab.schedules` (index 0 is the data), so the term drawn at
timestep t is L_{t−1}. Terms are reported in bits per dimension: nats averaged over the data
dimensions of each example, divided by ln 2 — the unit of the IDDPM tables.

Data must be images scaled to [−1, 1] with ``bins`` levels (8-bit: 256), as the decoder L_0 assumes.
A network with learned variance outputs 2C channels for C data channels: ε̂ first, then v_raw.
A sampler that visits a subsequence of the timesteps interpolates its variance between the respaced
chain's β_{t,s} and β̃_{t,s} instead (IDDPM Sec. 4, :func:`respaced_log_variances`).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from . import process
from .denoiser import split_output
from .errors import DifflabError
from .random import GeneratorLike, randn
from .schedules import Schedule

Tensor = torch.Tensor
Predict = Callable[[Tensor, Tensor], "tuple[Tensor, Optional[Tensor]]"]
CDFS = ("exact", "tanh")
FIXED_VARIANCES = ("small", "large")
OBJECTIVES = ("hybrid", "vlb")
HYBRID_LAMBDA = 0.001


# --------------------------------------------------------------------------- Gaussian pieces

def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats (the closed form used for
    every L_{t−1}, DDPM Eq. 5 / IDDPM Eq. 6):

        ½ (logvar2 − logvar1 + e^(logvar1 − logvar2) + (mean1 − mean2)² e^(−logvar2) − 1)
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """Φ(x) ≈ ½ (1 + tanh(√(2/π) (x + 0.044715 x³))), the approximation of the DDPM and IDDPM code
    (Page 1977); its absolute error is below 2·10⁻⁴."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _log1mexp(z: Tensor) -> Tensor:
    """log(1 − e^z) for z < 0, accurate on both sides of z = −ln 2 (Mächler 2012)."""
    z = z.clamp(max=-torch.finfo(z.dtype).tiny)
    near = torch.log(-torch.expm1(z.clamp(min=-math.log(2))))
    far = torch.log1p(-torch.exp(z.clamp(max=-math.log(2))))
    return torch.where(z > -math.log(2), near, far)


def _log_normal_mass(a: Tensor, b: Tensor) -> Tensor:
    """log(Φ(b) − Φ(a)) for a < b, without cancellation: bins above 0 are mirrored into the lower tail,
    where log Φ is accurate (``torch.special.log_ndtr``)."""
    upper = a > 0
    lo, hi = torch.where(upper, -b, a), torch.where(upper, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor, bins: int = 256,
                                        cdf: str = "exact") -> Tensor:
    """log P(x) per element, in nats, for data x in [−1, 1] on ``bins`` levels under N(mean, e^(2·log_scale))
    integrated over x's bin (DDPM Eq. 13): each x is taken to the nearest of the ``bins`` levels, bins have
    width 2/(bins − 1) around their level, and the bins at −1 and +1 extend to −∞ and +∞, so the ``bins``
    probabilities sum to one.

    ``cdf="exact"`` uses Φ with log-space tails, in float64 whatever the inputs (finite far into the tails,
    with finite gradients); ``cdf="tanh"`` reproduces the DDPM/IDDPM code in the inputs' dtype:
    :func:`approx_standard_normal_cdf` with probabilities clamped at 10⁻¹².
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise DifflabError(f"bins must be an integer >= 2, got {bins!r}.")
    if cdf not in CDFS:
        raise DifflabError(f"unknown cdf {cdf!r}; expected one of {', '.join(CDFS)}.")
    if x.numel() and not bool((x.abs() <= 1 + 1e-6).all()):
        raise DifflabError("discretized_gaussian_log_likelihood needs data x in [-1, 1] (images scaled from [0, 255]).")
    out_dtype = torch.promote_types(torch.promote_types(x.dtype, mean.dtype), log_scale.dtype)
    if cdf == "exact":
        x, mean, log_scale = x.double(), mean.double(), log_scale.double()
    level = torch.round((x + 1) * (bins - 1) / 2).clamp(0, bins - 1)
    centered = level * (2.0 / (bins - 1)) - 1 - mean
    half = 1.0 / (bins - 1)
    inv_scale = torch.exp(-log_scale)
    lower, upper = (centered - half) * inv_scale, (centered + half) * inv_scale
    if cdf == "exact":
        log_left, log_right, log_mid = (torch.special.log_ndtr(upper), torch.special.log_ndtr(-lower),
                                        _log_normal_mass(lower, upper))
    else:
        cdf_upper, cdf_lower = approx_standard_normal_cdf(upper), approx_standard_normal_cdf(lower)
        log_left = torch.log(cdf_upper.clamp(min=1e-12))
        log_right = torch.log((1.0 - cdf_lower).clamp(min=1e-12))
        log_mid = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    log_p = torch.where(level <= 0, log_left, torch.where(level >= bins - 1, log_right, log_mid))
    return log_p.to(out_dtype)


# --------------------------------------------------------------------------- schedule helpers

def _check_discrete(schedule) -> None:
    if not getattr(schedule, "discrete", False) or not hasattr(schedule, "posterior_variance"):
        raise DifflabError(f"the variational bound needs a discrete schedule with t = 1..T, got {schedule!r}.")


def _timesteps(schedule: Schedule, t, like: Tensor) -> Tensor:
    """t as a (B,) int64 CPU tensor of timesteps in 1..T."""
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise DifflabError(f"timesteps t must be integers in 1..T, got dtype {t.dtype}.")
    t = t.long().cpu()
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape != (like.shape[0],):
        raise DifflabError(f"timesteps t must have shape ({like.shape[0]},) for a batch of {like.shape[0]}, got {tuple(t.shape)}.")
    if t.numel() and (int(t.min()) < 1 or int(t.max()) > schedule.T):
        raise DifflabError(f"timesteps t must lie in 1..{schedule.T}, got values from {int(t.min())} to {int(t.max())}.")
    return t


def clipped_log_posterior_variance(schedule: Schedule) -> Tensor:
    """log β̃_t for t = 0..T (float64) with the t = 1 entry, where β̃_1 = 0, replaced by log β̃_2 — the
    "clipped" table of the IDDPM code. Only the decoder L_0 is evaluated at t = 1, and there the learned
    or fixed variance needs a finite lower end. With T = 1 there is no β̃_2 and β_1 is used."""
    _check_discrete(schedule)
    log_var = torch.full((schedule.T + 1,), -math.inf, dtype=torch.float64)
    log_var[2:] = torch.log(schedule.posterior_variance[2:])
    log_var[1] = log_var[2] if schedule.T >= 2 else math.log(float(schedule.betas[1]))
    return log_var


def learned_log_variance(schedule: Schedule, t, v_raw: Tensor) -> Tensor:
    """log Σ_θ(x_t, t) = v log β_t + (1 − v) log β̃_t (IDDPM Eq. 15), interpolating in log space between
    the two fixed choices of DDPM Sec. 3.2.

    The network's raw output v_raw (roughly in [−1, 1], unconstrained) is mapped to v = (v_raw + 1)/2 as
    in the IDDPM code, so v_raw = 1 gives β_t and v_raw = −1 gives β̃_t. At t = 1, β̃_1 = 0 is replaced by
    β̃_2 (:func:`clipped_log_posterior_variance`). Returns a tensor shaped and typed like v_raw.
    """
    _check_discrete(schedule)
    t = _timesteps(schedule, t, v_raw)
    log_beta = schedule.at(torch.log(schedule.betas.clamp(min=1e-300)), t, v_raw)
    log_beta_tilde = schedule.at(clipped_log_posterior_variance(schedule), t, v_raw)
    return interpolate_log_variance(v_raw, log_beta, log_beta_tilde)


def interpolate_log_variance(v_raw: Tensor, log_beta, log_beta_tilde) -> Tensor:
    """v log β + (1 − v) log β̃ with v = (v_raw + 1)/2 (IDDPM Eq. 15, with the v of the IDDPM code), for any
    pair of fixed log-variances that broadcast against v_raw (a timestep's, or a respaced step's)."""
    v = (v_raw + 1) / 2
    return v * log_beta + (1 - v) * log_beta_tilde


def respaced_log_variances(schedule: Schedule, timesteps) -> tuple[Tensor, Tensor]:
    """log β_{t,s} and log β̃_{t,s}, float64 tensors with one entry per step, for the chain that visits the
    decreasing ``timesteps`` (in 1..T; fractional ones read the interpolated ᾱ) and steps from each one t to
    the next one s, the last step going to s = 0 — respacing, IDDPM Sec. 4:

        β_{t,s} = 1 − ᾱ_t/ᾱ_s,    β̃_{t,s} = (1 − ᾱ_s)/(1 − ᾱ_t) · β_{t,s}.

    On the full sequence T, T−1, ..., 1 these are the schedule's β_t and β̃_t. On the last step β̃_{t,0} = 0;
    as in :func:`clipped_log_posterior_variance` it is replaced by the β̃ of the step before it (by β_{t,0}
    when there is a single step), so a learned variance has a finite lower end there too.
    """
    _check_discrete(schedule)
    ts = torch.as_tensor(timesteps).reshape(-1).to(torch.float64).cpu()
    if ts.numel() == 0 or not bool(((ts >= 1) & (ts <= schedule.T)).all()) or not bool((ts[1:] < ts[:-1]).all()):
        raise DifflabError(f"timesteps must be a non-empty decreasing sequence in 1..{schedule.T}, got {ts.tolist()}.")
    ss = torch.cat([ts[1:], torch.zeros(1, dtype=torch.float64)])
    like = torch.empty(ts.numel(), dtype=torch.float64)
    ab_t, ab_s = schedule.at(schedule.alpha_bar, ts, like), schedule.at(schedule.alpha_bar, ss, like)
    beta = 1.0 - ab_t / ab_s
    beta_tilde = (1.0 - ab_s) / (1.0 - ab_t) * beta
    beta_tilde[-1] = beta_tilde[-2] if ts.numel() > 1 else beta[-1]
    return torch.log(beta), torch.log(beta_tilde)


def fixed_log_variance(schedule: Schedule, t, like: Tensor, kind: str = "small") -> Tensor:
    """log σ_t² of a fixed-variance reverse process (DDPM Sec. 3.2): ``"small"`` σ_t² = β̃_t (clipped at
    t = 1 as in :func:`clipped_log_posterior_variance`), ``"large"`` σ_t² = β_t with β̃_2 at t = 1 (IDDPM code,
    so the decoder is the same for both). Returns a tensor shaped and typed like ``like``."""
    _check_discrete(schedule)
    if kind not in FIXED_VARIANCES:
        raise DifflabError(f"unknown fixed variance {kind!r}; expected one of {', '.join(FIXED_VARIANCES)}.")
    t = _timesteps(schedule, t, like)
    table = clipped_log_posterior_variance(schedule)
    if kind == "large":
        table = torch.cat([table[:2], torch.log(schedule.betas[2:])])
    return schedule.at(table, t, like).expand_as(like)


def model_mean_from_eps(schedule: Schedule, x_t: Tensor, t, eps: Tensor,
                        clip_x0: tuple[float, float] | None = None, x0: Tensor | None = None) -> Tensor:
    """μ_θ(x_t, t) = μ̃_t(x_t, x̂_0) with x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t (DDPM Eqs. 7 and 15; equal to
    DDPM Eq. 11 when no clipping). ``clip_x0`` = (low, high) clamps x̂_0 first, as the DDPM code does. ``x0``: the
    network's own x̂_0 where it gives one, used instead (at ᾱ_t = 0, zero terminal SNR, ε̂ implies no x̂_0)."""
    _check_discrete(schedule)
    t = _timesteps(schedule, t, x_t)
    x0_hat = process.eps_to_x0(schedule, x_t, t, eps) if x0 is None else x0
    if clip_x0 is not None:
        x0_hat = x0_hat.clamp(*clip_x0)
    return process.q_posterior(schedule, x0_hat, x_t, t)[0]


# --------------------------------------------------------------------------- the bound

def _bits_per_dim(nats: Tensor) -> Tensor:
    """Per-example mean over the data dimensions, in bits."""
    return nats.flatten(1).mean(1) / math.log(2.0)


def _eps_mse(eps: Tensor, noise: Tensor) -> Tensor:
    """‖ε − ε̂‖² averaged over dimensions, per example: L_simple (DDPM Eq. 14) from a network output."""
    return (eps - noise).pow(2).flatten(1).mean(1)


def vlb_term(schedule: Schedule, x0: Tensor, x_t: Tensor, t, model_mean: Tensor, model_logvar: Tensor,
             bins: int = 256, cdf: str = "exact") -> Tensor:
    """The term L_{t−1} of the bound at timestep t, per example, in bits/dim (IDDPM Eqs. 5–6; DDPM Eq. 5):
    KL(q(x_{t−1} | x_t, x_0) ‖ N(model_mean, e^model_logvar)) for t ≥ 2, and the decoder NLL
    −log p_θ(x_0 | x_1) (DDPM Eq. 13) for t = 1. Returns (B,) in x0's dtype."""
    _check_discrete(schedule)
    if x_t.shape != x0.shape or model_mean.shape != x0.shape:
        raise DifflabError(f"x_t and model_mean must have x0's shape {tuple(x0.shape)}, got "
                           f"{tuple(x_t.shape)} and {tuple(model_mean.shape)}.")
    t = _timesteps(schedule, t, x0)
    model_logvar = model_logvar.expand_as(x0)
    true_mean = process.q_posterior(schedule, x0, x_t, t)[0]
    true_logvar = schedule.at(clipped_log_posterior_variance(schedule), t, x0)
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar, bins, cdf)
    first = (t == 1).to(x0.device).reshape(-1, *([1] * (x0.ndim - 1)))
    return _bits_per_dim(torch.where(first, nll, kl))


def prior_bpd(schedule: Schedule, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)) per example in bits/dim (IDDPM Eq. 7); it has no parameters."""
    _check_discrete(schedule)
    t = torch.full((x0.shape[0],), schedule.T, dtype=torch.long)
    mean, var = process.q_mean_variance(schedule, x0, t)
    zero = torch.zeros_like(x0)
    return _bits_per_dim(normal_kl(mean, torch.log(var), zero, zero))


def model_predictor(model: torch.nn.Module, schedule: Schedule, learned_variance: bool = True, y: Tensor | None = None) -> Predict:
    """A ``predict(x_t, t) -> (ε̂, v_raw or None)`` for :func:`full_bound` from an ε-prediction network
    called through its :class:`~difflab.denoiser.Preconditioning`, with 2C output channels if ``learned_variance``."""
    from .denoiser import Preconditioning

    pre = Preconditioning(schedule, "eps", learned_variance)

    def predict(x_t: Tensor, t: Tensor):
        return pre.split(pre.call(model, x_t, t, y), x_t.shape[1])
    return predict


@torch.no_grad()
def full_bound(schedule: Schedule, x0: Tensor, predict: Predict, generator: GeneratorLike = None,
               clip_x0: tuple[float, float] | None = None, fixed_variance: str = "small", bins: int = 256,
               cdf: str = "exact", progress: bool = False) -> dict[str, Tensor]:
    """Every term of L_vlb (IDDPM Eq. 4) for a batch x0, one network call per timestep, t = T..1.

    ``predict(x_t, t)`` returns (ε̂, v_raw) — v_raw is None for a fixed variance, then ``fixed_variance``
    picks β̃_t or β_t (:func:`fixed_log_variance`) — or (ε̂, v_raw, x̂_0) for a network that predicts x̂_0 itself
    (needed at ᾱ_T = 0). x_t is drawn from q(x_t | x_0) with fresh noise for
    each t, in the order t = T..1, from ``generator``. Returns float64 tensors, all in bits/dim:
    ``total_bpd`` (B,), ``prior_bpd`` L_T (B,), ``terms_bpd`` (B, T) with column t − 1 holding L_{t−1},
    ``decoder_bpd`` L_0 (B,) (= column 0), and ``eps_mse`` (B, T), the mean squared error of ε̂ per t;
    ``total_bpd = prior_bpd + terms_bpd.sum(1)``.
    """
    _check_discrete(schedule)
    if fixed_variance not in FIXED_VARIANCES:
        raise DifflabError(f"unknown fixed variance {fixed_variance!r}; expected one of {', '.join(FIXED_VARIANCES)}.")
    batch, T = x0.shape[0], schedule.T
    terms = torch.zeros(batch, T, dtype=torch.float64)
    mse = torch.zeros(batch, T, dtype=torch.float64)
    steps = range(T, 0, -1)
    if progress:
        from .progress import progress_bar
        steps = progress_bar(steps, total=T, desc="bound")
    for step in steps:
        t = torch.full((batch,), step, dtype=torch.long)
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = process.q_sample(schedule, x0, t, noise)
        eps, v_raw, *x0_hat = predict(x_t, t.to(x0.device))
        mean = model_mean_from_eps(schedule, x_t, t, eps, clip_x0, x0_hat[0] if x0_hat else None)
        logvar = (fixed_log_variance(schedule, t, x_t, fixed_variance) if v_raw is None
                  else learned_log_variance(schedule, t, v_raw))
        terms[:, step - 1] = vlb_term(schedule, x0, x_t, t, mean, logvar, bins, cdf).double().cpu()
        mse[:, step - 1] = _eps_mse(eps, noise).double().cpu()
    prior = prior_bpd(schedule, x0).double().cpu()
    return {"total_bpd": prior + terms.sum(1), "prior_bpd": prior, "terms_bpd": terms,
            "decoder_bpd": terms[:, 0].clone(), "eps_mse": mse}


# --------------------------------------------------------------------------- training objectives

def l_vlb(schedule: Schedule, x0: Tensor, x_t: Tensor, t, output: Tensor,
          clip_x0: tuple[float, float] | None = None, bins: int = 256, cdf: str = "exact",
          stop_gradient: bool = True) -> Tensor:
    """L_vlb per example as trained in IDDPM Sec. 3.1: T · L_{t−1} at the drawn t, in bits/dim — a one-sample
    estimate of L_0 + ... + L_{T−1} for t ~ U{1..T} (with importance weights, of the same sum). L_T has no
    parameters and is left out. The mean of p_θ is built from a *detached* ε̂ (the "stop-gradient" of
    Sec. 3.1), so this term trains only the variance; ``stop_gradient=False`` lets it train the mean too,
    as when L_vlb is the whole objective (IDDPM Sec. 3.3). ``output`` is the network's 2C channels: ε̂, then v_raw.
    """
    _check_discrete(schedule)
    eps, v_raw = split_output(output, x0.shape[1])
    mean = model_mean_from_eps(schedule, x_t, t, eps.detach() if stop_gradient else eps, clip_x0)
    logvar = learned_log_variance(schedule, t, v_raw)
    return schedule.T * vlb_term(schedule, x0, x_t, t, mean, logvar, bins, cdf)


def l_hybrid(schedule: Schedule, x0: Tensor, x_t: Tensor, t, noise: Tensor, output: Tensor, lam: float = HYBRID_LAMBDA,
             clip_x0: tuple[float, float] | None = None, bins: int = 256, cdf: str = "exact") -> Tensor:
    """L_hybrid = L_simple + λ L_vlb per example (IDDPM Eq. 16, λ = 0.001), with L_simple the mean squared
    error of ε̂ over dimensions (DDPM Eq. 14) and L_vlb from :func:`l_vlb`. With λ = 0.001 and T = 1000 the
    L_vlb part is the bits/dim term itself, as in the IDDPM code (its "vb · T/1000")."""
    if noise.shape != x0.shape:
        raise DifflabError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}.")
    simple = _eps_mse(split_output(output, x0.shape[1])[0], noise)
    return simple + lam * l_vlb(schedule, x0, x_t, t, output, clip_x0, bins, cdf)


def hybrid_losses(denoiser, x0: Tensor, t, noise: Tensor | None = None, generator: GeneratorLike = None,
                  lam: float = HYBRID_LAMBDA, y: Tensor | None = None, objective: str = "hybrid",
                  **conditioning) -> dict[str, Tensor]:
    """One training step's per-example losses for a learned-variance ε-network (IDDPM Eq. 16): draws
    x_t ~ q(x_t | x_0) at the given t, runs the network of ``denoiser`` (a learned-variance
    :class:`~difflab.denoiser.ModelDenoiser`, 2C output channels) through its preconditioning and returns
    ``{"loss": L_hybrid, "mse": L_simple, "vlb": L_vlb}``, each (B,). Weight ``loss`` by the timestep
    sampler's importance weights, and feed the sampler the unweighted ``loss``.

    ``objective="vlb"`` trains L_vlb alone (IDDPM Sec. 3.3): ``loss`` is then ``vlb`` with gradients to the
    mean as well as the variance (no stop-gradient), and ``mse`` is reported only."""
    if objective not in OBJECTIVES:
        raise DifflabError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}.")
    schedule = denoiser.schedule
    t = _timesteps(schedule, t, x0)
    if noise is None:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = process.q_sample(schedule, x0, t, noise)
    output = denoiser.network(x_t, t, y, **conditioning).to(x0.dtype)
    mse = _eps_mse(split_output(output, x0.shape[1])[0], noise)
    if objective == "vlb":
        vlb = l_vlb(schedule, x0, x_t, t, output, stop_gradient=False)
        return {"loss": vlb, "mse": mse.detach(), "vlb": vlb}
    vlb = l_vlb(schedule, x0, x_t, t, output)
    return {"loss": mse + lam * vlb, "mse": mse, "vlb": vlb}


__all__ = ["normal_kl", "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood",
           "clipped_log_posterior_variance", "learned_log_variance",
           "interpolate_log_variance", "respaced_log_variances", "fixed_log_variance", "model_mean_from_eps",
           "vlb_term", "prior_bpd", "split_output", "model_predictor", "full_bound", "l_vlb", "l_hybrid",
           "hybrid_losses"]
