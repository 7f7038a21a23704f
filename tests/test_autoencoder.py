"""The first stage of latent diffusion: KL and VQ regularisers against independent references, the
autoencoders' shapes, and (tiny) training, resume refusal and evaluation of ``difflab train-autoencoder``."""

import json
import math

import numpy as np
import pytest
import torch

from difflab import regularizers
from difflab.errors import DifflabError
from difflab.models.autoencoder import (VectorQuantizer, build_autoencoder, complete_autoencoder_config,
                                        latent_shape)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_kl_matches_numerical_integral():
    """½(μ² + σ² − 1 − log σ²) per dimension against ∫ q log(q/p) by scipy quadrature, summed."""
    from scipy import integrate, stats

    mean = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.7, -2.0]], dtype=torch.float64)
    want = 0.0
    for m, lv in zip(mean[0].tolist(), logvar[0].tolist()):
        q = stats.norm(m, math.exp(lv / 2))
        f = lambda x: q.pdf(x) * (q.logpdf(x) - stats.norm.logpdf(x))  # noqa: E731
        want += integrate.quad(f, m - 20 * math.exp(lv / 2), m + 20 * math.exp(lv / 2), limit=200)[0]
    got = regularizers.kl_to_standard_normal(mean, logvar)
    assert got.shape == (1,)
    assert float(got[0]) == pytest.approx(want, rel=1e-8, abs=1e-10)


def test_kl_is_zero_at_the_prior_and_sums_over_latent():
    z = torch.zeros(2, 4, 3, 5, dtype=torch.float64)
    assert torch.equal(regularizers.kl_to_standard_normal(z, z), torch.zeros(2, dtype=torch.float64))
    m = torch.full((1, 4, 3, 5), 2.0, dtype=torch.float64)
    assert float(regularizers.kl_to_standard_normal(m, torch.zeros_like(m))[0]) == pytest.approx(0.5 * 4 * 60)


def test_nearest_codes_by_brute_force():
    g = torch.Generator().manual_seed(0)
    z, book = torch.randn(50, 3, generator=g), torch.randn(7, 3, generator=g)
    want = [min(range(7), key=lambda j: float(((z[i] - book[j]) ** 2).sum())) for i in range(50)]
    assert regularizers.nearest_codes(z, book).tolist() == want


def test_straight_through_value_and_gradient():
    """Forward: the quantised vector; backward: the decoder's gradient copied unchanged to z_e."""
    g = torch.Generator().manual_seed(1)
    z_e = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z_q = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    out = regularizers.straight_through(z_e, z_q)
    assert torch.allclose(out, z_q, atol=1e-15)
    (out * w).sum().backward()
    assert torch.equal(z_e.grad, w)


def test_quantizer_gradient_reaches_encoder_and_commitment_gradient():
    vq = VectorQuantizer(5, 3).double().eval()
    g = torch.Generator().manual_seed(2)
    z_e = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    z_q, codes, commit = vq(z_e)
    e = vq.codebook[codes].permute(0, 3, 1, 2)
    assert torch.allclose(z_q, e)
    # commitment β-term: d/dz_e ‖z_e − sg(e)‖² = 2 (z_e − e); no gradient into the codebook
    (z_q.sum() + commit.sum()).backward()
    assert torch.allclose(z_e.grad, 1.0 + 2 * (z_e - e).detach())


def test_ema_codebook_update_by_hand():
    """N_i ← γN_i + (1−γ)n_i, m_i ← γm_i + (1−γ)Σ z_j, e_i = m_i / Laplace-smoothed N_i, with loops."""
    g = torch.Generator().manual_seed(3)
    k, d, gamma, eps = 4, 2, 0.9, 1e-5
    size = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
    total = torch.randn(k, d, generator=g, dtype=torch.float64)
    z = torch.randn(9, d, generator=g, dtype=torch.float64)
    codes = torch.tensor([0, 1, 1, 3, 3, 3, 0, 1, 3])
    want_n, want_m = [], []
    for i in range(k):
        n_i = sum(1 for c in codes.tolist() if c == i)
        s_i = [0.0] * d
        for j, c in enumerate(codes.tolist()):
            if c == i:
                s_i = [s_i[a] + float(z[j, a]) for a in range(d)]
        want_n.append(gamma * float(size[i]) + (1 - gamma) * n_i)
        want_m.append([gamma * float(total[i, a]) + (1 - gamma) * s_i[a] for a in range(d)])
    big_n = sum(want_n)
    want_e = [[want_m[i][a] / ((want_n[i] + eps) / (big_n + k * eps) * big_n) for a in range(d)] for i in range(k)]
    n, m, e = regularizers.ema_codebook_update(size, total, z, codes, gamma, eps)
    assert np.allclose(n.numpy(), want_n, atol=1e-14)
    assert np.allclose(m.numpy(), want_m, atol=1e-14)
    assert np.allclose(e.numpy(), want_e, atol=1e-12)


def test_quantizer_training_step_applies_the_ema_update():
    vq = VectorQuantizer(3, 2, decay=0.8).double().train()
    g = torch.Generator().manual_seed(4)
    first = torch.randn(1, 2, 2, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    vq(first)  # data-dependent initialisation: the codebook is 3 of these 4 vectors
    flat = first.permute(0, 2, 3, 1).reshape(-1, 2)
    assert all(any(torch.allclose(c, v) for v in flat) for c in vq.codebook)
    before = (vq.cluster_size.clone(), vq.embed_sum.clone(), vq.codebook.clone())
    z = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64)
    vq(z)
    zf = z.permute(0, 2, 3, 1).reshape(-1, 2)
    codes = regularizers.nearest_codes(zf, before[2])
    n, m, e = regularizers.ema_codebook_update(before[0], before[1], zf, codes, 0.8)
    assert torch.allclose(vq.codebook, e) and torch.allclose(vq.cluster_size, n)
    vq.eval()
    kept = vq.codebook.clone()
    vq(z)
    assert torch.equal(vq.codebook, kept)  # eval mode leaves the codebook alone


def test_hinge_losses_and_psnr():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.2])
    assert float(regularizers.hinge_discriminator_loss(real, fake)) == pytest.approx(0.5 * ((0 + 0.5) / 2 + (0 + 1.2) / 2))
    assert float(regularizers.hinge_generator_loss(fake)) == pytest.approx(1.4)
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[0.1, 0.0], [0.0, 0.0]]]])
    assert float(regularizers.psnr(x, y)[0]) == pytest.approx(10 * math.log10(1 / (0.01 / 4)))


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_autoencoder_shapes(kind):
    cfg = complete_autoencoder_config({"type": kind, "channels": 8, "channel_mult": [1, 2, 2], "codebook_size": 16})
    assert latent_shape(cfg) == (4, 8, 16)
    torch.manual_seed(0)
    ae = build_autoencoder(cfg)
    x = torch.rand(3, 1, 28, 56) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (3, 4, 8, 16)
    assert ae.decode(z).shape == (3, 1, 28, 56)
    x_rec, reg = ae(x, torch.Generator().manual_seed(0))
    assert x_rec.shape == x.shape and reg.shape == (3,)


def test_autoencoder_config_errors():
    with pytest.raises(DifflabError, match="type must be 'kl' or 'vq'"):
        complete_autoencoder_config({"type": "gan"})
    with pytest.raises(DifflabError, match="unknown autoencoder model key 'depth'"):
        complete_autoencoder_config({"depth": 3})
    with pytest.raises(DifflabError, match="multiple of"):
        complete_autoencoder_config({"pad": [1, 4]})


def test_training_with_discriminator_resumes_exactly(tmp_path):
    """2 steps + resume to 4 (VQ, patch discriminator from step 1) ends where 4 uninterrupted steps do."""
    from difflab import checkpoint
    from difflab.training.autoencoder import resolve, train_autoencoder

    cfg = resolve({"preset": "mnist-pairs-vq", "model": {"channels": 8, "codebook_size": 16}, "data": {"num": 48},
                   "loss": {"disc_weight": 0.1, "disc_start": 1},
                   "train": {"steps": 4, "batch_size": 8, "log_every": 1, "save_every": 0, "eval_num": 8}})
    quiet = lambda *a: None  # noqa: E731
    train_autoencoder(cfg, tmp_path / "full", progress=False, log=quiet)
    train_autoencoder(cfg, tmp_path / "part", steps=2, progress=False, log=quiet)
    train_autoencoder(cfg, tmp_path / "part", steps=4, resume=True, progress=False, log=quiet)
    a = checkpoint.load_tensors(checkpoint.latest_valid(tmp_path / "full"), "trainer")
    b = checkpoint.load_tensors(checkpoint.latest_valid(tmp_path / "part"), "trainer")
    assert any(k.startswith("disc.") for k in a) and set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full = checkpoint.load_tensors(checkpoint.latest_valid(tmp_path / "full"), "model")
    part = checkpoint.load_tensors(checkpoint.latest_valid(tmp_path / "part"), "model")
    assert all(torch.equal(full[k], part[k]) for k in full)
    log = (tmp_path / "part" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    assert json.loads((tmp_path / "part" / "eval.json").read_text())["step"] == 4
