"""Markov chain Monte Carlo over any log-density (or energy, log p = −E + const): random-walk Metropolis, unadjusted
Langevin, Metropolis-adjusted Langevin and Hamiltonian Monte Carlo.

Each sampler is a pure function ``(log_prob, x, steps, step_size, generator, ...) -> Chain``: ``log_prob`` maps a
batch of N independent chains' states (N, ...) to N log-densities, known up to a constant; ``x`` is their start.
Every random draw comes from the explicit ``generator``. Gradients are taken by autograd with respect to the states
only (a network's parameters collect none). A chain that reaches a NaN or infinite log-density stops with one
sentence naming the step, so nothing is written from a broken chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..checks import check_integer
from ..errors import DifflabError
from ..random import randn

Tensor = torch.Tensor
LogProb = Callable[[Tensor], Tensor]


@dataclass
class Chain:
    """The end of N chains: their states (N, ...), the share of proposals accepted (1 for the unadjusted sampler),
    their log-densities, and the batch mean of the log-density after every step (a trace to judge mixing by)."""

    samples: Tensor
    acceptance: float
    log_prob: Tensor
    trace: list[float] = field(default_factory=list)


def check_step(name: str, value) -> float:
    """A step size must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise DifflabError(f"the {name} step size must be a finite number > 0, got {value!r}.")
    return float(value)


def _check_steps(steps) -> int:
    check_integer(steps, "steps")
    return steps


def evaluate(log_prob: LogProb, x: Tensor, step: int, grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """log p(x) of N chains, shape (N,), and with ``grad`` its gradient ∇ₓ log p(x); refuses a log-density that is
    not one number per chain or is NaN/infinite (at MCMC step ``step``)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(grad)
        lp = log_prob(x)
        if not isinstance(lp, Tensor) or lp.shape != (x.shape[0],):
            shape = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
            raise DifflabError(f"the energy (log-density) must return one number per chain, shape ({x.shape[0]},), "
                               f"got {shape}.")
        if not torch.isfinite(lp).all():
            bad = int((~torch.isfinite(lp)).sum())
            raise DifflabError(f"the energy (log-density) is NaN or infinite for {bad} of {x.shape[0]} chains at MCMC "
                               f"step {step}; lower the step size or check the model (nothing was written).")
        g = torch.autograd.grad(lp.sum(), x)[0] if grad else None
    return lp.detach(), None if g is None else g.detach()


def _sum(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


def _accept(log_ratio: Tensor, generator) -> Tensor:
    """Metropolis–Hastings acceptance: u < exp(log ratio) with u ~ U(0, 1), per chain (N,) bool."""
    u = torch.rand(log_ratio.shape, generator=generator, dtype=torch.float64).to(log_ratio.device)
    return torch.log(u) < log_ratio.double()


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.reshape(-1, *[1] * (a.ndim - 1)), a, b)


def metropolis(log_prob: LogProb, x: Tensor, steps: int, step_size: float, generator=None) -> Chain:
    """Random-walk Metropolis (Metropolis et al. 1953): propose x' = x + s z, z ~ N(0, I), accept with probability
    min(1, p(x')/p(x)); the symmetric proposal leaves p invariant."""
    s = check_step("metropolis", step_size)
    lp, _ = evaluate(log_prob, x, 0)
    accepted, trace = 0.0, []
    for k in range(1, _check_steps(steps) + 1):
        prop = x + s * randn(x.shape, generator, x.device, x.dtype)
        lp_prop, _ = evaluate(log_prob, prop, k)
        ok = _accept(lp_prop - lp, generator)
        x, lp = _where(ok, prop, x), torch.where(ok, lp_prop, lp)
        accepted += float(ok.double().mean())
        trace.append(float(lp.mean()))
    return Chain(x.detach(), accepted / steps, lp, trace)


def langevin_step(x: Tensor, grad: Tensor, step_size: float, z: Tensor, noise_scale: float | None = None) -> Tensor:
    """One step of the Langevin diffusion discretized by Euler–Maruyama (Roberts & Tweedie 1996, Eq. 1.2):
    x' = x + τ ∇log p(x) + √(2τ) z. (Song & Ermon 2019 write it with α = 2τ: x + (α/2) ∇log p + √α z.)
    ``noise_scale`` replaces √(2τ) (the small-noise short-run chains of Du & Mordatch 2019, which trade the
    sampler's law for sharpness)."""
    return x + step_size * grad + (math.sqrt(2.0 * step_size) if noise_scale is None else noise_scale) * z


def langevin(log_prob: LogProb, x: Tensor, steps: int, step_size: float, generator=None) -> Chain:
    """Unadjusted Langevin algorithm (ULA): :func:`langevin_step` without correction; its stationary law is p only
    as τ → 0 (for a Gaussian of variance v it is v/(1 − τ/(2v)))."""
    tau = check_step("langevin", step_size)
    lp, g = evaluate(log_prob, x, 0, grad=True)
    trace = []
    for k in range(1, _check_steps(steps) + 1):
        x = langevin_step(x, g, tau, randn(x.shape, generator, x.device, x.dtype))
        lp, g = evaluate(log_prob, x, k, grad=True)
        trace.append(float(lp.mean()))
    return Chain(x.detach(), 1.0, lp, trace)


def mala(log_prob: LogProb, x: Tensor, steps: int, step_size: float, generator=None) -> Chain:
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996, Sec. 1.4.2): the Langevin proposal
    x' ~ q(·|x) = N(x + τ∇log p(x), 2τ I), accepted with probability min(1, p(x') q(x|x') / (p(x) q(x'|x)))."""
    tau = check_step("mala", step_size)
    lp, g = evaluate(log_prob, x, 0, grad=True)
    accepted, trace = 0.0, []

    def log_q(to: Tensor, frm: Tensor, grad_frm: Tensor) -> Tensor:  # log N(to; frm + τ∇, 2τ I) up to a constant
        return -_sum((to - frm - tau * grad_frm) ** 2) / (4.0 * tau)

    for k in range(1, _check_steps(steps) + 1):
        prop = langevin_step(x, g, tau, randn(x.shape, generator, x.device, x.dtype))
        lp_prop, g_prop = evaluate(log_prob, prop, k, grad=True)
        ok = _accept(lp_prop - lp + log_q(x, prop, g_prop) - log_q(prop, x, g), generator)
        x, lp, g = _where(ok, prop, x), torch.where(ok, lp_prop, lp), _where(ok, g_prop, g)
        accepted += float(ok.double().mean())
        trace.append(float(lp.mean()))
    return Chain(x.detach(), accepted / steps, lp, trace)


def leapfrog(log_prob: LogProb, x: Tensor, p: Tensor, grad: Tensor, step_size: float, n: int, step: int):
    """n leapfrog steps of Hamiltonian dynamics with H(x, p) = −log p(x) + ½‖p‖² (Neal 2011, Eq. 5.18–5.20):
    p ← p + (ε/2)∇log p(x); x ← x + ε p; p ← p + (ε/2)∇log p(x). Returns x, p, log p(x), ∇log p(x) at the end."""
    for _ in range(n):
        p = p + 0.5 * step_size * grad
        x = x + step_size * p
        lp, grad = evaluate(log_prob, x, step, grad=True)
        p = p + 0.5 * step_size * grad
    return x, p, lp, grad


def hmc(log_prob: LogProb, x: Tensor, steps: int, step_size: float, generator=None, leapfrog_steps: int = 10) -> Chain:
    """Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011, Sec. 5.3.2): fresh momentum p ~ N(0, I), L leapfrog
    steps of size ε, accepted with probability min(1, exp(H(x, p) − H(x', p'))). The leapfrog map is volume-preserving
    and reversible, so the acceptance step leaves p(x) invariant; its energy error grows as ε², so the acceptance
    rate falls as the step size grows."""
    eps = check_step("hmc", step_size)
    check_integer(leapfrog_steps, "hmc leapfrog_steps")
    lp, g = evaluate(log_prob, x, 0, grad=True)
    accepted, trace = 0.0, []
    for k in range(1, _check_steps(steps) + 1):
        p = randn(x.shape, generator, x.device, x.dtype)
        x_new, p_new, lp_new, g_new = leapfrog(log_prob, x, p, g, eps, leapfrog_steps, k)
        log_ratio = (lp_new - 0.5 * _sum(p_new**2)) - (lp - 0.5 * _sum(p**2))
        ok = _accept(log_ratio, generator)
        x, lp, g = _where(ok, x_new, x), torch.where(ok, lp_new, lp), _where(ok, g_new, g)
        accepted += float(ok.double().mean())
        trace.append(float(lp.mean()))
    return Chain(x.detach(), accepted / steps, lp, trace)


#: the samplers by name, as ``difflab sample RUN --sampler NAME`` takes them for an energy-based run
SAMPLERS: dict[str, Callable[..., Chain]] = {"metropolis": metropolis, "langevin": langevin, "mala": mala, "hmc": hmc}


def get(name: str) -> Callable[..., Chain]:
    if name not in SAMPLERS:
        raise DifflabError(f"unknown MCMC sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name]


def energy_log_prob(energy: Callable[[Tensor], Tensor]) -> LogProb:
    """log p(x) = −E(x) (+ log Z, which no sampler needs) of an energy function."""
    return lambda x: -energy(x)
