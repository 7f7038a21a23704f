"""The RBM against brute-force enumeration: free energy, log Z (exact and by AIS), Gibbs sampling's law."""

import itertools
import math

import pytest
import torch

from difflab.ebm.rbm import RBM, ais_log_partition, exact_log_partition
from difflab.errors import DifflabError


def tiny_rbm(visible, hidden, scale=1.0, seed=0):
    torch.manual_seed(seed)
    rbm = RBM(visible, hidden)
    with torch.no_grad():
        rbm.W.copy_(scale * torch.randn(visible, hidden))
        rbm.b.copy_(0.5 * torch.randn(visible))
        rbm.c.copy_(0.5 * torch.randn(hidden))
    return rbm.double()


def states(n):
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)


def joint_energy(rbm, v, h):
    return -(v @ rbm.b) - (h @ rbm.c) - ((v @ rbm.W) * h).sum(1)


def test_free_energy_and_log_z_by_summing_the_joint():
    """F(v) = −log Σ_h exp(−E(v, h)) and log Z = log Σ_{v,h} exp(−E(v, h)), both summed over every state."""
    rbm = tiny_rbm(4, 3)
    vs, hs = states(4), states(3)
    with torch.no_grad():
        e = torch.stack([joint_energy(rbm, v.expand(len(hs), -1), hs) for v in vs])  # (16, 8)
        torch.testing.assert_close(rbm.free_energy(vs), -torch.logsumexp(-e, 1))
        assert exact_log_partition(rbm) == pytest.approx(float(torch.logsumexp(-e.flatten(), 0)), abs=1e-10)
    wide = tiny_rbm(3, 5)  # enumerated over the hidden layer instead
    with torch.no_grad():
        e = torch.stack([joint_energy(wide, v.expand(32, -1), states(5)) for v in states(3)])
        assert exact_log_partition(wide) == pytest.approx(float(torch.logsumexp(-e.flatten(), 0)), abs=1e-10)


def test_ais_matches_the_enumerated_log_z():
    """12 visible, 8 hidden units with strong weights: AIS with 200 chains and 2,000 temperatures lands within 3
    standard errors (and 0.05 nats) of the enumerated log Z."""
    rbm = tiny_rbm(12, 8, scale=1.0, seed=1)
    exact = exact_log_partition(rbm)
    est, se = ais_log_partition(rbm, chains=200, betas=2000, generator=torch.Generator().manual_seed(0))
    assert abs(est - exact) < max(3 * se, 0.05), (est, exact, se)
    crude, _ = ais_log_partition(rbm, chains=200, betas=2, generator=torch.Generator().manual_seed(0))
    assert abs(crude - exact) > abs(est - exact)  # one jump from the base is plain importance sampling: worse


def test_gibbs_sampling_reaches_p_of_v():
    """4,000 chains, 200 sweeps: the histogram over the 16 visible states is within total variation 0.04 of
    exp(−F(v))/Z."""
    rbm = tiny_rbm(4, 3, seed=2)
    g = torch.Generator().manual_seed(0)
    v = rbm.gibbs(torch.zeros(4000, 4, dtype=torch.float64), 200, generator=g)
    codes = (v * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).sum(1).long()
    emp = torch.bincount(codes, minlength=16).double() / len(codes)
    with torch.no_grad():
        exact = torch.exp(-rbm.free_energy(states(4)) - exact_log_partition(rbm))
    assert float(exact.sum()) == pytest.approx(1.0)
    assert 0.5 * float((emp - exact).abs().sum()) < 0.04


def test_bad_sizes_are_refused():
    with pytest.raises(DifflabError, match="RBM option 'hidden' must be an integer >= 1"):
        RBM(4, 0)
    with pytest.raises(DifflabError, match="at most 20 units"):
        exact_log_partition(RBM(30, 30))
    assert math.isfinite(exact_log_partition(RBM(30, 4)))
