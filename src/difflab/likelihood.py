"""Exact log-likelihood by the probability-flow ODE (Song et al. 2021, "Score-Based Generative Modeling
through Stochastic Differential Equations", Sec. 4.3 and Appx. D.2; the instantaneous change of
variables of Chen et al. 2018 and FFJORD, Grathwohl et al. 2019, Eq. 4), and bits per dimension.

Along a solution of dx/dt = v(x, t) (the probability-flow drift, Eq. 13), d log p_t(x(t))/dt = −∇·v, so

    log p_0(x(0)) = log p_T(x(T)) + ∫_0^T ∇·v(x(t), t) dt          (Song et al. 2021, Eq. 39).

The ODE starts at the schedule's t_min instead of 0 (σ_0 = 0 makes the score undefined there), so the
result is log p_{t_min}(x_0): the density of x_0 under the data convolved with N(0, σ_{t_min}² I) and
scaled by α_{t_min} — σ ≈ 0.01 for VP (t_min = 1e-3) and the discrete schedules (t = 1), 0.01 for VE —
a truncation that changes log p by about ½ D σ²/s² for features of scale s (Song et al. 2021, Appx. D.2,
use the same small ε). The prior p_T is N(0, σ_T² I) with σ_T = σ(t_max) (≈ 1 for VP, σ_max for VE),
which neglects the tiny α_T x_0 left in x_T. On a schedule with zero terminal SNR (ᾱ_T = 0, Lin et al. 2024) the
drift d log α/dt is infinite at T, so the ODE stops at T − 1, where α is tiny (6e-5 for the rescaled linear
schedule) and the same prior applies.
"""

from __future__ import annotations

import math

import torch

from .errors import DifflabError
from .random import GeneratorLike, randn
from .samplers.ode import check_tolerances, dormand_prince, probability_flow_drift

Tensor = torch.Tensor
TRACES = ("exact", "hutchinson")


def exact_divergence(v: Tensor, x: Tensor) -> Tensor:
    """∇·v = Σ_j ∂v_j/∂x_j per example, from D gradient rows (one backward pass per dimension; fine for
    small D). ``v`` must be computed from ``x`` with gradients enabled, and example i from x_i alone."""
    flat = v.reshape(v.shape[0], -1)
    d = flat.shape[1]
    div = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    for j in range(d):
        (row,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=j < d - 1)
        div = div + row.reshape(row.shape[0], -1)[:, j]
    return div


def hutchinson_divergence(v: Tensor, x: Tensor, probes: Tensor) -> Tensor:
    """∇·v ≈ (1/K) Σ_k z_kᵀ (∂v/∂x) z_k with K probes z_k (``probes`` of shape (K, *x.shape)), each a
    vector-Jacobian product; unbiased for probes of zero mean and identity covariance (Hutchinson 1990;
    FFJORD, Grathwohl et al. 2019, Eq. 7; Rademacher probes have the least variance)."""
    total = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    k = probes.shape[0]
    for i in range(k):
        z = probes[i]
        (vjp,) = torch.autograd.grad((v * z).sum(), x, retain_graph=i < k - 1)
        total = total + (vjp * z).reshape(z.shape[0], -1).sum(1)
    return total / k


def prior_log_prob(x_T: Tensor, sigma_T: float) -> Tensor:
    """log N(x_T; 0, σ_T² I) per example, float64."""
    x = x_T.reshape(x_T.shape[0], -1).to(torch.float64)
    d = x.shape[1]
    return -0.5 * d * math.log(2 * math.pi * sigma_T**2) - 0.5 * x.pow(2).sum(1) / sigma_T**2


def rademacher(shape, generator: GeneratorLike = None, device=None, dtype=torch.float32) -> Tensor:
    """±1 with probability ½ each, drawn through :func:`difflab.random.randn` (its sign), so a list of
    generators gives row i from generator i."""
    return torch.where(randn(shape, generator, device, dtype) >= 0, 1.0, -1.0).to(dtype)


def log_likelihood(denoiser, x0: Tensor, rtol: float = 1e-5, atol: float = 1e-5, trace: str = "exact",
                   num_probes: int = 1, generator: GeneratorLike = None) -> tuple[Tensor, int]:
    """log p(x_0) in nats per example, shape (B,) float64, and the number of denoiser evaluations, by the
    probability-flow ODE integrated from t_min to t_max jointly with ∫ ∇·v dt (Song et al. 2021, Eq. 39,
    Appx. D.2; see the module docstring for the t_min truncation and the prior).

    The ODE is solved with adaptive Dormand–Prince 5(4) (tolerances ``rtol``, ``atol`` on both x and the
    log-density). ``trace``: ``exact`` sums D gradient rows of the drift (D backward passes per
    evaluation), ``hutchinson`` uses ``num_probes`` Rademacher probes drawn once from ``generator`` and
    kept fixed along the solve (FFJORD, Grathwohl et al. 2019, Sec. 3.1), an unbiased estimate. The
    denoiser is called with gradients enabled; compute in float64 for tight tolerances.
    """
    check_tolerances(rtol, atol)
    if trace not in TRACES:
        raise DifflabError(f"unknown trace estimator {trace!r}; expected 'exact' or 'hutchinson'.")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise DifflabError(f"num_probes must be an integer >= 1, got {num_probes!r}.")
    if not isinstance(x0, Tensor) or x0.ndim < 2 or x0.shape[0] == 0:
        raise DifflabError("log_likelihood needs a batch x0 of shape (B, ...) with B >= 1.")
    schedule = denoiser.schedule
    t0, t1 = float(schedule.t_min), float(schedule.t_max)
    if getattr(schedule, "zero_terminal_snr", False):  # d log α/dt = −∞ at T (module docstring)
        t1 -= 1
    x0 = x0.detach()
    probes = None
    if trace == "hutchinson":
        probes = rademacher((x0.shape[0], num_probes, *x0.shape[1:]), generator, x0.device, x0.dtype).transpose(0, 1)
    nfe = 0

    def drift_and_divergence(t, state):
        nonlocal nfe
        x = state[0]
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v, pred = probability_flow_drift(denoiser, x, t)
            if not pred.eps.requires_grad:
                raise DifflabError("the denoiser returned no gradient with respect to x; log_likelihood needs a "
                                   "differentiable denoiser (do not wrap it in torch.no_grad).")
            div = exact_divergence(v, x) if probes is None else hutchinson_divergence(v, x, probes)
        nfe += 1
        return v.detach(), div.detach().to(torch.float64)

    delta0 = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    (x_T, delta), _ = dormand_prince(drift_and_divergence, t0, t1, (x0, delta0), rtol, atol,
                                     h0=(t1 - t0) / 100)
    sigma_T = float(schedule.sigma(torch.tensor(t1, dtype=torch.float64)))
    return prior_log_prob(x_T, sigma_T) + delta, nfe


def bits_per_dim(logp_nats: Tensor | float, num_dims: int, bins: int = 256, scale: float = 0.5) -> Tensor | float:
    """Bits per dimension of discrete data from a continuous density in model coordinates, with uniform
    dequantization (Song et al. 2021, Appx. D; Ho et al. 2020, Sec. 4.2 / Theis et al. 2016 for the
    dequantization bound):

        bpd = −(log p_model(y) − D ln(scale)) / (D ln 2) + log₂(bins)

    Data x ∈ [0, 1] in ``bins`` levels map to model coordinates by y = (x − shift)/scale, so
    data = scale·model + shift, as in the run's normalization (scale = 0.5, shift = 0.5 for images in
    [−1, 1]); log p_data(x) = log p_model(y) − D ln(scale). Uniform dequantization in bins of width
    1/bins gives log P(bin) ≥ log p_data(x) − D ln(bins), i.e. + log₂ 256 = 8 bits per dimension for 8-bit
    images. With scale 0.5 this is Song et al.'s −log p/(D ln 2) + 7. ``logp_nats`` is per example.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise DifflabError(f"num_dims must be an integer >= 1, got {num_dims!r}.")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise DifflabError(f"bins must be an integer >= 2, got {bins!r}.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise DifflabError(f"scale must be a number > 0, got {scale!r}.")
    d = num_dims
    return -(logp_nats - d * math.log(scale)) / (d * math.log(2)) + math.log2(bins)


__all__ = ["log_likelihood", "bits_per_dim", "exact_divergence", "hutchinson_divergence", "prior_log_prob",
           "rademacher"]
