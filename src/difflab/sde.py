"""Continuous-time noise schedules: the VP, sub-VP and VE SDEs of Song et al. 2021, "Score-Based
Generative Modeling through Stochastic Differential Equations" (Sec. 3.4 and Appx. B).

Each gives the marginal q(x_t | x_0) = N(α_t x_0, σ_t² I) in closed form on t ∈ [0, 1] and exposes
the same view as the discrete :class:`~difflab.schedules.Schedule`: ``alpha(t)``, ``sigma(t)``,
``lambda_(t)``, ``t_from_lambda``, ``t_min``/``t_max`` and ``model_time``. By convention
α_0 = 1 and σ_0 = 0 (the data), so every sampler's last step to t = 0 is the denoised x̂_0.

The forward SDE dx = f(t) x dt + g(t) dw of any such marginal follows from α and σ alone
(Kingma et al. 2021, "Variational Diffusion Models", Appx. A):
f(t) = d log α_t / dt and g²(t) = dσ_t²/dt − 2 f(t) σ_t²; :func:`sde_coefficients` computes them.
"""

from __future__ import annotations

import math

import torch

from .errors import DifflabError

Tensor = torch.Tensor


def _t64(t) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class ContinuousSchedule:
    """Base of the SDE schedules; subclasses define ``log_alpha`` and ``sigma_of``."""

    discrete = False
    name = "continuous"
    t_max = 1.0
    t_min = 1e-3

    def log_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma_of(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def alpha(self, t) -> Tensor:
        return torch.exp(self.log_alpha(_t64(t)))

    def sigma(self, t) -> Tensor:
        t = _t64(t)
        return torch.where(t > 0, self.sigma_of(t), torch.zeros_like(t))

    def lambda_(self, t) -> Tensor:
        """Log-SNR λ_t = log α_t² − log σ_t²."""
        t = _t64(t)
        return 2 * self.log_alpha(t) - 2 * torch.log(self.sigma(t))

    def model_time(self, t) -> Tensor:
        """The network sees 999·t, the scale of the discrete models (as score_sde does for VP)."""
        return (999.0 * _t64(t)).to(torch.float32)

    def input_scale(self, t) -> Tensor:
        """1/√(α_t² + σ_t²): keeps the network's input at unit scale (Karras et al. 2022, c_in of
        Table 1 with σ_data = 1); exactly 1 for VP."""
        t = _t64(t)
        return torch.rsqrt(self.alpha(t) ** 2 + self.sigma(t) ** 2)

    def t_from_lambda(self, lam) -> Tensor:
        """The t with λ_t = lam, by bisection on [0, 1] (λ decreases in t)."""
        lam = _t64(lam)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(64):
            mid = (lo + hi) / 2
            above = self.lambda_(mid) > lam
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def to_config(self) -> dict:
        return {"schedule": self.name, **self.params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


class VPSDE(ContinuousSchedule):
    """Variance preserving: dx = −½β(t) x dt + √β(t) dw, β(t) = β_min + t(β_max − β_min)
    (Song et al. 2021, Eq. 11); log α_t = −¼t²(β_max − β_min) − ½tβ_min, σ_t² = 1 − α_t² (Eq. 29)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        if not 0 < beta_min < beta_max:
            raise DifflabError(f"vp schedule needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}.")
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)
        self.params = {"beta_min": beta_min, "beta_max": beta_max, "t_min": t_min}

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sigma_of(self, t: Tensor) -> Tensor:
        return (-torch.expm1(2 * self.log_alpha(t))).sqrt()

    def input_scale(self, t) -> Tensor:
        return torch.ones_like(_t64(t))

    def t_from_lambda(self, lam) -> Tensor:
        """Solve ½Δt² + β_min t + log α² = 0 with α² = sigmoid(λ), Δ = β_max − β_min."""
        log_a2 = torch.nn.functional.logsigmoid(_t64(lam))
        d = self.beta_max - self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 - 2 * d * log_a2)) / d


class SubVPSDE(VPSDE):
    """Sub-VP: dx = −½β(t) x dt + √(β(t)(1 − e^{−2∫β})) dw (Song et al. 2021, Eq. 12);
    the same α_t as VP and σ_t = 1 − α_t² (Eq. 29), always below the VP variance."""

    name = "subvp"

    def sigma_of(self, t: Tensor) -> Tensor:
        return -torch.expm1(2 * self.log_alpha(t))

    input_scale = ContinuousSchedule.input_scale

    def t_from_lambda(self, lam) -> Tensor:
        return ContinuousSchedule.t_from_lambda(self, lam)


class VESDE(ContinuousSchedule):
    """Variance exploding: dx = √(dσ²/dt) dw, σ_t = σ_min (σ_max/σ_min)^t, α_t = 1
    (Song et al. 2021, Eq. 9 and 30; the continuous limit of NCSN's geometric noise levels)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5):
        if not 0 < sigma_min < sigma_max:
            raise DifflabError(f"ve schedule needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(t_min)
        self.params = {"sigma_min": sigma_min, "sigma_max": sigma_max, "t_min": t_min}

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def sigma_of(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def t_from_lambda(self, lam) -> Tensor:
        sigma = torch.exp(-_t64(lam) / 2)
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


class NCSNLevels(VESDE):
    """NCSN's noise levels (Song & Ermon 2019, Sec. 4.2): L geometric levels σ_1 > ... > σ_L between
    sigma_max and sigma_min, α = 1. Indexed like a discrete schedule, t = 1..L from the least noisy
    (t = 1 is σ_min) to the noisiest (t = L is σ_max); fractional t interpolates geometrically, so this is
    the VE SDE of Song et al. 2021 sampled at L times (their Sec. 3.4 says as much)."""

    name = "ncsn"
    discrete = True

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, levels: int = 10):
        super().__init__(sigma_min, sigma_max)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise DifflabError(f"ncsn schedule needs levels >= 2, got {levels!r}.")
        self.T = levels
        self.t_min, self.t_max = 1.0, float(levels)
        self.params = {"sigma_min": sigma_min, "sigma_max": sigma_max, "levels": levels}

    def _u(self, t: Tensor) -> Tensor:
        return (_t64(t) - 1) / (self.T - 1)

    def sigma_of(self, t: Tensor) -> Tensor:
        return super().sigma_of(self._u(t))

    def model_time(self, t) -> Tensor:
        return _t64(t).to(torch.float32)

    def t_from_lambda(self, lam) -> Tensor:
        return 1 + super().t_from_lambda(lam) * (self.T - 1)

    def sigma_levels(self) -> Tensor:
        """σ_1 > ... > σ_L as the paper lists them (noisiest first)."""
        return self.sigma(torch.arange(self.T, 0, -1, dtype=torch.float64))


class FlowPath(ContinuousSchedule):
    """The straight path of flow matching and rectified flow, x_t = (1 − t) x_0 + t ε: α_t = 1 − t, σ_t = t
    (Lipman et al. 2023, "Flow Matching for Generative Modeling", Eq. 23 with σ_min = 0; Liu et al. 2023,
    "Flow Straight and Fast", Eq. 1). Sampling starts at ``t_max`` = 0.999 (α = 0.001), where the log-SNR the
    solvers step in is finite; the ε-draw there is N(0, t_max² I), off the true marginal by 0.001 x_0."""

    name = "flow"

    def __init__(self, t_min: float = 1e-3, t_max: float = 0.999):
        if not 0 < t_min < t_max < 1:
            raise DifflabError(f"flow schedule needs 0 < t_min < t_max < 1, got {t_min}, {t_max}.")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.params = {"t_min": t_min, "t_max": t_max}

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.log1p(-t)

    def sigma_of(self, t: Tensor) -> Tensor:
        return t

    def t_from_lambda(self, lam) -> Tensor:
        """λ = 2 log((1 − t)/t), so t = sigmoid(−λ/2)."""
        return torch.sigmoid(-_t64(lam) / 2)


class LearnedSchedule(ContinuousSchedule):
    """A variance-preserving schedule with a learned log-SNR (Kingma et al. 2021, "Variational Diffusion Models",
    Eq. 3–4): α_t² = sigmoid(−γ(t)), σ_t² = sigmoid(γ(t)), γ = −λ a monotone network of t
    (:class:`~difflab.models.vdm.MonotoneGamma`). Its coefficients here are constants; the bound that trains γ calls
    the γ network itself (:func:`difflab.continuous_bound.gamma_and_slope`). ``schedules.get("learned")``
    gives one with a fresh γ (linear in t from ``gamma_min`` to ``gamma_max``); a trained run's schedule is
    :meth:`of` its network's. t runs over [0, 1]: at t = 0 the data (by the convention of every schedule here), at
    t = 1 the prior N(0, σ_1² I)."""

    name = "learned"
    t_min = 1e-4

    def __init__(self, gamma_min: float = -13.3, gamma_max: float = 5.0, hidden: int = 1024, gamma=None):
        if not gamma_min < gamma_max:
            raise DifflabError(f"learned schedule needs gamma_min < gamma_max, got {gamma_min}, {gamma_max}.")
        from .models.vdm import MonotoneGamma

        self.params = {"gamma_min": gamma_min, "gamma_max": gamma_max, "hidden": hidden}
        self.gamma = gamma if gamma is not None else MonotoneGamma(gamma_min, gamma_max, hidden)

    @classmethod
    def of(cls, network, params: dict) -> "LearnedSchedule":
        """The schedule a :class:`~difflab.models.vdm.LearnedScheduleNetwork` (or a DDP / compiled wrapper of it)
        carries."""
        for attr in ("module", "_orig_mod"):
            network = getattr(network, attr, network)
        return cls(**params, gamma=network.gamma)

    def gamma_at(self, t) -> Tensor:
        """γ(t) on the γ network's device, in float64, as a constant (the bound that trains γ calls the network
        itself: :func:`difflab.continuous_bound.gamma_and_slope`)."""
        device = self.gamma.gamma_0.device
        with torch.no_grad():
            return self.gamma(_t64(t).to(device))

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * torch.nn.functional.logsigmoid(-self.gamma_at(t)).to(_t64(t).device)

    def sigma_of(self, t: Tensor) -> Tensor:
        return torch.sigmoid(self.gamma_at(t)).sqrt().to(_t64(t).device)

    def alpha(self, t) -> Tensor:
        t = _t64(t)
        return torch.where(t > 0, torch.exp(self.log_alpha(t)), torch.ones_like(t))

    def input_scale(self, t) -> Tensor:
        return torch.ones_like(_t64(t))


SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE, "ncsn": NCSNLevels, "flow": FlowPath, "learned": LearnedSchedule}


def sde_coefficients(schedule, t, dt: float = 1e-4) -> tuple[Tensor, Tensor]:
    """(f(t), g²(t)) of the forward SDE whose marginals are schedule's (α_t, σ_t), float64:
    f = d log α/dt, g² = dσ²/dt − 2 f σ² (Kingma et al. 2021, Appx. A), by central differences in t
    (in timesteps for a discrete schedule, whose α is piecewise linear in ᾱ)."""
    t = _t64(t)
    lo = torch.maximum(t - dt, t / 2)  # never reach t = 0, where σ jumps to 0 by convention (VE)
    hi = (t + dt).clamp(max=float(schedule.t_max))
    width = hi - lo
    f = (torch.log(schedule.alpha(hi)) - torch.log(schedule.alpha(lo))) / width
    s2 = schedule.sigma(t) ** 2
    ds2 = (schedule.sigma(hi) ** 2 - schedule.sigma(lo) ** 2) / width
    return f, ds2 - 2 * f * s2
