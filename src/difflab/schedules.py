"""Noise schedules: every coefficient of the discrete forward process, computed once in float64.

Indexing follows the papers: timesteps are t = 1..T and index 0 is the clean data, so
``alpha_bar[0] = 1`` and ``beta[0] = 0``. With that convention the last reverse step of any
sampler goes to t = 0 with no special case, and ``posterior_variance[1] = 0`` (DDPM, Ho et al.
2020, Algorithm 2 adds no noise on its last step).

Every sampler, loss and metric reads its coefficients from a :class:`Schedule`; none recomputes
a cumulative product of its own.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import DifflabError

Tensor = torch.Tensor
_BETA_MAX = 0.999


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_t linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4).

    The endpoints are given for T = 1000; for another T they are scaled by 1000/T so that the
    total amount of noise stays the same (Nichol & Dhariwal 2021, Sec. 3 / their code).
    """
    scale = 1000.0 / T
    return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)


def quadratic_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_t = (linear interpolation of √β_start .. √β_end)², the DDPM code's "quad" schedule."""
    scale = 1000.0 / T
    root = torch.linspace(math.sqrt(beta_start * scale), math.sqrt(beta_end * scale), T, dtype=torch.float64)
    return root**2


def betas_from_alpha_bar(alpha_bar: Callable[[Tensor], Tensor], T: int, max_beta: float = _BETA_MAX) -> Tensor:
    """β_t = min(1 − ᾱ(t/T) / ᾱ((t−1)/T), max_beta) (Nichol & Dhariwal 2021, Eq. 17 and below)."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = alpha_bar(t)
    return torch.clamp(1.0 - ab[1:] / ab[:-1], max=max_beta)


def cosine_alpha_bar(u: Tensor, s: float = 0.008) -> Tensor:
    """ᾱ(u) = f(u)/f(0), f(u) = cos²(π/2 · (u + s)/(1 + s)) for u = t/T (Nichol & Dhariwal 2021, Eq. 17)."""
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def sigmoid_alpha_bar(u: Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    """ᾱ(u) from a shifted, scaled sigmoid (Jabri et al. 2022 / Chen 2023, "On the importance of
    noise scheduling", Algorithm 1): ᾱ(u) = (σ(end/τ) − σ((u(end − start) + start)/τ)) / (σ(end/τ) − σ(start/τ)).
    """
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """The betas whose √ᾱ_t is the given schedule's shifted to end at 0 and scaled to start where it started, so
    ᾱ_T = 0, the terminal SNR is exactly zero and the last step sees pure noise (Lin et al. 2024, "Common Diffusion
    Noise Schedules and Sample Steps Are Flawed", Sec. 3.1 and Algorithm 1). β_T becomes 1."""
    root = torch.cumprod(1.0 - betas.to(torch.float64), 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


def _cosine_betas(T: int, s: float = 0.008) -> Tensor:
    return betas_from_alpha_bar(lambda u: cosine_alpha_bar(u, s), T)


def _sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    return betas_from_alpha_bar(lambda u: sigmoid_alpha_bar(u, start, end, tau), T)


BETA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "cosine": _cosine_betas,
    "sigmoid": _sigmoid_betas,
    "quadratic": quadratic_betas,
}


def as_time(t) -> Tensor:
    """Times as a tensor without losing precision: Python floats become float64 (not float32)."""
    if isinstance(t, torch.Tensor):
        return t
    if isinstance(t, float) or (isinstance(t, (list, tuple)) and any(isinstance(v, float) for v in t)):
        return torch.tensor(t, dtype=torch.float64)
    return torch.as_tensor(t)


class Schedule:
    """A discrete variance-preserving noise schedule, t = 1..T, all tables float64 of length T+1.

    Tables (index t; index 0 is the data):
      betas β_t, alphas α_t = 1 − β_t, alpha_bar ᾱ_t = Π_{s≤t} α_s (DDPM Eq. 4),
      posterior_variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (DDPM Eq. 7),
      posterior_mean_coef_x0 = √ᾱ_{t−1} β_t / (1 − ᾱ_t), posterior_mean_coef_xt = √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
      (DDPM Eq. 7), alpha_t = √ᾱ_t and sigma_t = √(1 − ᾱ_t) (so x_t = alpha_t x_0 + sigma_t ε), and the
      log-SNR λ_t = log(alpha_t² / sigma_t²) (Kingma et al. 2021), +inf at t = 0.

    A last β_T = 1 gives ᾱ_T = 0, zero terminal SNR (:func:`rescale_zero_terminal_snr`): λ_T = −inf, and only a
    network that predicts v or x_0 can be read at t = T (ε̂ says nothing about x_0 there).
    """

    def __init__(self, betas: Tensor, name: str = "custom", params: dict | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        inside = (betas > 0) & (betas < 1)
        if betas.numel() == 0 or not torch.all(inside[:-1]) or not 0 < float(betas[-1]) <= 1:
            raise DifflabError("schedule betas must be a non-empty sequence of numbers in (0, 1) (the last may be 1: "
                               "zero terminal SNR).")
        self.name = name
        self.params = dict(params or {})
        self.T = int(betas.numel())
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, betas])
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.alpha_bar_prev = alpha_bar_prev
        one_minus = 1.0 - self.alpha_bar
        safe = torch.where(one_minus > 0, one_minus, torch.ones_like(one_minus))
        self.posterior_variance = torch.where(one_minus > 0, self.betas * (1.0 - alpha_bar_prev) / safe, zero)
        self.posterior_mean_coef_x0 = torch.where(one_minus > 0, alpha_bar_prev.sqrt() * self.betas / safe, zero + 1)
        self.posterior_mean_coef_xt = torch.where(one_minus > 0, self.alphas.sqrt() * (1.0 - alpha_bar_prev) / safe, zero)
        self.alpha_t = self.alpha_bar.sqrt()
        self.sigma_t = one_minus.sqrt()
        self.log_snr = torch.log(self.alpha_bar) - torch.log(one_minus)
        self.zero_terminal_snr = bool(self.alpha_bar[-1] == 0)

    discrete = True

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, T={self.T})"

    @property
    def t_max(self) -> float:
        """The noisiest timestep, where sampling starts."""
        return float(self.T)

    @property
    def t_min(self) -> float:
        """The least noisy timestep a network was trained on (t = 1)."""
        return 1.0

    def model_time(self, t: Tensor) -> Tensor:
        """The time value the network receives: the timestep itself, 1..T."""
        return torch.as_tensor(t).to(torch.float32)

    def input_scale(self, t: Tensor) -> Tensor:
        """The network sees x_t / √(α_t² + σ_t²), which is x_t itself for a VP schedule (see
        :func:`difflab.process.model_input`)."""
        return torch.ones_like(torch.as_tensor(t, dtype=torch.float64))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """The (fractional) t with λ_t = lam: the inverse of :meth:`lambda_` on the same piecewise-linear ᾱ."""
        target = torch.sigmoid(torch.as_tensor(lam, dtype=torch.float64))
        table = self.alpha_bar
        lo = (torch.searchsorted(-table, -target, right=True) - 1).clamp(0, self.T - 1)
        w = (table[lo] - target) / (table[lo] - table[lo + 1])
        return (lo + w.clamp(0, 1)).to(torch.float64)

    def to_config(self) -> dict:
        return {"schedule": self.name, "T": self.T, **self.params}

    # Continuous view shared with SDE schedules: alpha(t), sigma(t), lambda(t).
    def alpha(self, t: Tensor) -> Tensor:
        """√ᾱ_t at (possibly fractional) t in [0, T]; float64."""
        return self._interp(self.alpha_bar, t).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """√(1 − ᾱ_t) at (possibly fractional) t in [0, T]; float64."""
        return (1.0 - self._interp(self.alpha_bar, t)).sqrt()

    def lambda_(self, t: Tensor) -> Tensor:
        """Log-SNR λ_t = log ᾱ_t − log(1 − ᾱ_t); float64."""
        ab = self._interp(self.alpha_bar, t)
        return torch.log(ab) - torch.log1p(-ab)

    def _interp(self, table: Tensor, t) -> Tensor:
        t = as_time(t)
        if not t.is_floating_point():
            return table[t.long()]
        t = t.to(torch.float64).clamp(0, self.T)
        lo = t.floor().long().clamp(max=self.T - 1)
        w = t - lo
        return table[lo] * (1 - w) + table[lo + 1] * w

    def at(self, table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """Gather ``table[t]`` per example and shape it to broadcast against ``like`` (its dtype/device)."""
        t = torch.as_tensor(t).cpu()
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        values = self._interp(table, t)
        return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def get(name: str = "linear", T: int = 1000, **params):
    """Build a named schedule: discrete ``linear``, ``cosine``, ``sigmoid`` or ``quadratic`` with T
    steps, or a continuous-time SDE ``vp``, ``subvp`` or ``ve`` (t in [0, 1]; T is ignored). A discrete schedule
    with ``zero_terminal_snr=True`` is rescaled so ᾱ_T = 0 (:func:`rescale_zero_terminal_snr`)."""
    from . import sde

    zero_terminal = params.pop("zero_terminal_snr", False)
    if not isinstance(zero_terminal, bool):
        raise DifflabError(f"⟨diffusion.schedule_params.zero_terminal_snr⟩ must be true or false, got {zero_terminal!r}.")
    if zero_terminal and name in sde.SDES:
        raise DifflabError(f"⟨diffusion.schedule_params.zero_terminal_snr⟩ rescales a discrete schedule (linear, cosine, "
                           f"sigmoid, quadratic), not {name!r}.")
    if name in sde.SDES:
        try:
            return sde.SDES[name](**params)
        except TypeError as e:
            raise DifflabError(f"bad parameters {sorted(params)} for schedule {name!r}: {e}.") from None
    if name not in BETA_SCHEDULES:
        raise DifflabError(f"unknown schedule {name!r}; expected one of {', '.join([*BETA_SCHEDULES, *sde.SDES])}.")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise DifflabError(f"schedule T must be a positive integer, got {T!r}.")
    try:
        betas = BETA_SCHEDULES[name](T, **params)
    except TypeError as e:
        raise DifflabError(f"bad parameters {sorted(params)} for schedule {name!r}: {e}.") from None
    if not torch.all((betas > 0) & (betas < 1)):
        raise DifflabError(f"schedule {name!r} with T = {T} gives betas outside (0, 1) (largest {betas.max().item():.3g}); "
                           "use a larger T or other parameters.")
    if zero_terminal:
        if T < 2:
            raise DifflabError("⟨diffusion.schedule_params.zero_terminal_snr⟩ needs T >= 2.")
        betas = rescale_zero_terminal_snr(betas)
        params = {**params, "zero_terminal_snr": True}
    return Schedule(betas, name=name, params=params)


def summary(schedule: "Schedule") -> dict:
    """ᾱ_t at t = T/4, T/2, 3T/4 and T, and the fraction t/T from which the SNR ᾱ_t/(1 − ᾱ_t) is below 1 (the first
    t with log-SNR ≤ 0): the numbers ``difflab schedules`` compares (Nichol & Dhariwal 2021, Fig. 5)."""
    T = schedule.T
    first_below = int((schedule.log_snr[1:] > 0).sum()) + 1
    return {"alpha_bar_at_quarters": [float(schedule.alpha_bar[round(f * T)]) for f in (0.25, 0.5, 0.75, 1.0)],
            "snr_below_one_from": first_below / T}


def names(continuous: bool = False) -> list[str]:
    """Names of the discrete schedules (and of the continuous SDEs too, if asked)."""
    from . import sde

    return list(BETA_SCHEDULES) + (list(sde.SDES) if continuous else [])
