"""The continuous-time variational bound of variational diffusion models (Kingma et al. 2021, "Variational
Diffusion Models", Sec. 3–5), for a schedule with a learned γ(t) = −λ(t) (:class:`difflab.sde.LearnedSchedule`):

    −log p(x) ≤ L_prior + L_reconstruction + L_∞,
    L_prior = KL(q(z_1 | x) ‖ N(0, I)),
    L_reconstruction = E_q(z_0|x) [−log p(x | z_0)]   (8-bit data, a per-pixel softmax over the 256 levels),
    L_∞ = ½ E_{ε, t ~ U(0,1)} [γ'(t) ‖ε − ε̂(z_t; t)‖²]   (Eq. 17),

in nats per example; :func:`vlb_bits_per_dim` adds them up in bits per dimension. L_∞ depends on the schedule only
through its ends γ(0), γ(1) (Eq. 19), so the ends learn from the bound itself while the shape in between learns to
minimise the variance of the L_∞ estimate (Sec. 5.2): :func:`variance_gradient` turns the bound's gradient for the
shape into that of E[L_∞²]. Times are drawn antithetically (:func:`difflab.objectives.antithetic_timesteps`).
"""

from __future__ import annotations

import math

import torch
from torch.nn.functional import logsigmoid

Tensor = torch.Tensor
#: the 256 levels of 8-bit data, in the model's [−1, 1]
LEVELS = 256


class _VarianceGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradients of (γ̃, γ̃') per example by ``weight``, which the caller
    fills after the forward pass with 2 L_∞ (so the shape's gradient is that of L_∞²)."""

    @staticmethod
    def forward(ctx, shape: Tensor, slope: Tensor, weight: Tensor):
        ctx.weight = weight
        return shape.clone(), slope.clone()

    @staticmethod
    def backward(ctx, d_shape: Tensor, d_slope: Tensor):
        w = ctx.weight.to(d_shape.dtype)
        return d_shape * w, d_slope * w, None


def variance_gradient(shape: Tensor, slope: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(shape, slope, weight): the normalised γ̃(t) and its derivative passed through an identity whose backward
    scales their gradients by ``weight`` (B,), zero until the caller fills it (Kingma et al. 2021, Sec. 5.2 and
    Appx. I.2: ∂E[L²]/∂η = E[2 L ∂L/∂η])."""
    weight = torch.zeros_like(shape.detach())
    shape, slope = _VarianceGradient.apply(shape, slope, weight)
    return shape, slope, weight


def gamma_and_slope(gamma, t: Tensor, variance: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """(γ(t), γ'(t), the variance weight to fill or None) for a :class:`~difflab.models.vdm.MonotoneGamma`, float64
    on its device, γ' by autograd (create_graph, so it trains)."""
    t = t.detach().to(device=gamma.gamma_0.device, dtype=torch.float64).requires_grad_(True)
    with torch.enable_grad():
        shape = gamma.shape(t)
        slope = torch.autograd.grad(shape.sum(), t, create_graph=True)[0]
    weight = None
    if variance and torch.is_grad_enabled():
        shape, slope, weight = variance_gradient(shape, slope)
    g0, g1 = gamma.ends(torch.float64)
    return g0 + (g1 - g0) * shape, (g1 - g0) * slope, weight


def diffusion_loss(gamma_slope: Tensor, eps: Tensor, eps_hat: Tensor) -> Tensor:
    """L_∞ for one t per example: ½ γ'(t) ‖ε − ε̂(z_t; t)‖² (Kingma et al. 2021, Eq. 17), nats (B,)."""
    err = (eps.double() - eps_hat.double()).pow(2).flatten(1).sum(1)
    return 0.5 * gamma_slope.to(err.device) * err


def prior_loss(gamma_1: Tensor, x: Tensor) -> Tensor:
    """KL(N(α_1 x, σ_1² I) ‖ N(0, I)) = ½ Σ (σ_1² + α_1² x² − 1 − log σ_1²), α_1² = sigmoid(−γ_1), nats (B,)."""
    g = gamma_1.to(x.device)
    a2, s2, log_s2 = torch.sigmoid(-g), torch.sigmoid(g), logsigmoid(g)
    return 0.5 * (s2 + a2 * x.double().pow(2) - 1 - log_s2).flatten(1).sum(1)


def reconstruction_loss(gamma_0: Tensor, x: Tensor, eps: Tensor) -> Tensor:
    """−log p(x | z_0) for 8-bit data x in [−1, 1] with z_0 = α_0 x + σ_0 ε: each pixel's level k has probability
    ∝ exp(−(z_0/α_0 − v_k)² / (2 σ_0²/α_0²)) over the 256 levels v_k = 2k/255 − 1 (Kingma et al. 2021, Sec. 3.3 and
    Appx. C), nats (B,). x is read at its nearest level."""
    g = gamma_0.to(x.device)
    a, s = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
    x = x.double()
    z_scaled = x + (s / a) * eps.double()  # z_0/α_0
    levels = torch.linspace(-1, 1, LEVELS, dtype=torch.float64, device=x.device)
    logits = -(z_scaled.unsqueeze(-1) - levels).pow(2) / (2 * (s / a) ** 2)
    index = ((x.clamp(-1, 1) + 1) / 2 * (LEVELS - 1)).round().long().unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, index).squeeze(-1)
    return -logp.flatten(1).sum(1)


def vlb_bits_per_dim(denoiser, x0: Tensor, t: Tensor, eps: Tensor, y: Tensor | None = None,
                     variance: bool = True, **conditioning) -> tuple[Tensor, dict[str, Tensor]]:
    """The bound per example in bits per dimension (B,), and its three terms (nats), for an ε network on a learned
    schedule, at the times ``t`` with the noise ``eps`` (one draw of each per example). With ``variance`` (and
    gradients on), the schedule's shape gets the gradient of E[L_∞²] (:func:`variance_gradient`)."""
    gamma = denoiser.schedule.gamma
    g_t, slope, weight = gamma_and_slope(gamma, t, variance)
    a, s = torch.sigmoid(-g_t).sqrt(), torch.sigmoid(g_t).sqrt()
    shape = (-1,) + (1,) * (x0.ndim - 1)
    z_t = a.to(x0).reshape(shape) * x0 + s.to(x0).reshape(shape) * eps
    eps_hat = denoiser.network(z_t, t, y, **conditioning)
    g0, g1 = gamma.ends(torch.float64)
    terms = {"diffusion": diffusion_loss(slope, eps, eps_hat), "prior": prior_loss(g1, x0),
             "reconstruction": reconstruction_loss(g0, x0, eps)}
    dims = x0[0].numel()
    bpd = (terms["diffusion"] + terms["prior"] + terms["reconstruction"]) / (dims * math.log(2))
    if weight is not None:
        weight.copy_(2 * (terms["diffusion"] / (dims * math.log(2))).detach().to(weight.device))
    return bpd.to(x0.dtype), terms
