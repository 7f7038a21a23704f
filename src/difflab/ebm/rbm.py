"""A restricted Boltzmann machine with binary visible and hidden units (Smolensky 1986; Hinton 2002): block Gibbs
sampling, the free energy, contrastive divergence CD-k and persistent CD (Tieleman 2008), and its log-likelihood by
annealed importance sampling (Salakhutdinov & Murray 2008), checked against exact enumeration when small.

E(v, h) = −bᵀv − cᵀh − vᵀWh;  p(v, h) = exp(−E(v, h)) / Z;  the hidden units marginalise in closed form to the free
energy F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j), p(v) = exp(−F(v)) / Z.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DifflabError

Tensor = torch.Tensor


class RBM(nn.Module):
    """A binary RBM with ``visible`` and ``hidden`` units; W (visible, hidden) starts at N(0, 0.01²) (Hinton 2010,
    "A practical guide", Sec. 8), the biases at 0. ``forward`` is the free energy, so the loop's loss
    F(v_data) − F(v_model) has the CD gradient."""

    def __init__(self, visible: int = 784, hidden: int = 128):
        super().__init__()
        for name, value in (("visible", visible), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DifflabError(f"RBM option '{name}' must be an integer >= 1, got {value!r}.")
        self.config = {"visible": visible, "hidden": hidden}
        self.W = nn.Parameter(torch.randn(visible, hidden) * 0.01)
        self.b = nn.Parameter(torch.zeros(visible))
        self.c = nn.Parameter(torch.zeros(hidden))

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j) per example (Hinton 2010, Eq. 25)."""
        v = v.flatten(1).to(self.W.dtype)
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(1)

    forward = free_energy

    def hidden_given_visible(self, v: Tensor) -> Tensor:
        """p(h_j = 1 | v) = σ(c_j + (vᵀW)_j)."""
        return torch.sigmoid(v.flatten(1).to(self.W.dtype) @ self.W + self.c)

    def visible_given_hidden(self, h: Tensor) -> Tensor:
        """p(v_i = 1 | h) = σ(b_i + (W h)_i)."""
        return torch.sigmoid(h @ self.W.T + self.b)

    def gibbs(self, v: Tensor, k: int, generator=None, uniforms: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """k sweeps of block Gibbs sampling v → h ~ p(h|v) → v ~ p(v|h); returns the last visible states. With
        ``uniforms`` = (u_h (k, B, hidden), u_v (k, B, visible)) a unit is on where u < its probability (pre-drawn
        randomness, so that training resumes bit for bit)."""
        v = v.flatten(1).to(self.W.dtype)
        for i in range(k):
            p_h = self.hidden_given_visible(v)
            h = torch.bernoulli(p_h, generator=generator) if uniforms is None else (uniforms[0][i] < p_h).to(p_h.dtype)
            p_v = self.visible_given_hidden(h)
            v = torch.bernoulli(p_v, generator=generator) if uniforms is None else (uniforms[1][i] < p_v).to(p_v.dtype)
        return v


def exact_log_partition(rbm: RBM) -> float:
    """log Z by enumerating the smaller layer: log Z = logsumexp_v −F(v) over all 2^visible states (or the
    symmetric sum over the hidden states). Only for a layer of at most 20 units."""
    n_v, n_h = rbm.W.shape
    if min(n_v, n_h) > 20:
        raise DifflabError(f"exact log Z enumerates 2^{min(n_v, n_h)} states; it is for RBMs with a layer of at most "
                           "20 units (use ais_log_partition).")
    with torch.no_grad():
        W, b, c = rbm.W.double(), rbm.b.double(), rbm.c.double()
        if n_v <= n_h:
            v = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n_v)), dtype=torch.float64)
            return float(torch.logsumexp(v @ b + F.softplus(v @ W + c).sum(1), 0))
        h = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n_h)), dtype=torch.float64)
        return float(torch.logsumexp(h @ c + F.softplus(h @ W.T + b).sum(1), 0))


def ais_log_partition(rbm: RBM, chains: int = 100, betas: int = 1000, base_bias: Tensor | None = None,
                      generator=None) -> tuple[float, float]:
    """log Z by annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008, Sec. 4.1): from the base RBM A
    with no weights and visible biases ``base_bias`` (Z_A = 2^hidden Π_i (1 + e^{b_A,i}); the data's log-odds make
    a good one) through the RBMs with weights β_k W, hidden biases β_k c and visible biases (1 − β_k) b_A + β_k b,
    β_k evenly spaced from 0 to 1; each chain's log weight adds −F_k(v_k) + F_{k−1}(v_k), v_{k+1} is one Gibbs
    sweep at β_k. Returns (log Z, its standard error by the delta method over the chains)."""
    if betas < 2 or chains < 2:
        raise DifflabError(f"AIS needs at least 2 chains and 2 temperatures, got chains={chains}, betas={betas}.")
    with torch.no_grad():
        W, b, c = rbm.W.double(), rbm.b.double(), rbm.c.double()
        b_a = torch.zeros_like(b) if base_bias is None else base_bias.double().reshape(-1)
        n_h = W.shape[1]

        def neg_free(v: Tensor, beta: float) -> Tensor:  # −F_β(v)
            return v @ ((1 - beta) * b_a + beta * b) + F.softplus(beta * (v @ W + c)).sum(1)

        v = torch.bernoulli(torch.sigmoid(b_a).expand(chains, -1), generator=generator)
        log_w = torch.zeros(chains, dtype=torch.float64)
        schedule = torch.linspace(0.0, 1.0, betas, dtype=torch.float64).tolist()
        for prev, beta in itertools.pairwise(schedule):
            log_w += neg_free(v, beta) - neg_free(v, prev)
            h = torch.bernoulli(torch.sigmoid(beta * (v @ W + c)), generator=generator)
            v = torch.bernoulli(torch.sigmoid(h @ (beta * W).T + (1 - beta) * b_a + beta * b), generator=generator)
        log_z_a = n_h * math.log(2.0) + float(F.softplus(b_a).sum())
        log_mean = float(torch.logsumexp(log_w, 0)) - math.log(chains)
        w = torch.exp(log_w - log_w.max())
        rel_se = float(w.std() / (w.mean() * math.sqrt(chains)))  # se of log mean ≈ se(mean)/mean
        return log_z_a + log_mean, rel_se


def log_likelihood(rbm: RBM, v: Tensor, log_z: float) -> Tensor:
    """log p(v) = −F(v) − log Z per example."""
    with torch.no_grad():
        return -rbm.free_energy(v).double() - log_z


def data_log_odds(v: Tensor, eps: float = 1e-3) -> Tensor:
    """The base rate visible biases log(p̄/(1 − p̄)) of binary data v (Hinton 2010, Sec. 8.1), clipped away from 0, 1."""
    p = v.flatten(1).double().mean(0).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
