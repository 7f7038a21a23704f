"""The first stage's losses: what keeps an autoencoder's latent space fit for diffusion.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models", Sec. 3.1 and Appx. G) regularises the autoencoder in one of two ways:

* KL-reg.: a small KL penalty of the Gaussian posterior q(z | x) = N(μ, diag σ²) towards N(0, I),
  as in a VAE (Kingma & Welling 2014, Appx. B) but with a weight ~1e-6 .. 1e-4;
* VQ-reg.: a vector-quantisation layer (van den Oord et al. 2017, "Neural Discrete Representation
  Learning", Eq. 3) with the straight-through gradient, the commitment loss, and a codebook kept
  as an exponential moving average of the encoder outputs assigned to each code (their Appx. A.1;
  Razavi et al. 2019, VQ-VAE-2).

The reconstruction can be sharpened by a patch discriminator (Isola et al. 2017) with the hinge
loss (Rombach et al. 2022, Appx. G; Esser et al. 2021, Eq. 5). Every function takes and returns
tensors; state lives in the modules of :mod:`difflab.models.autoencoder`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["kl_to_standard_normal", "nearest_codes", "straight_through", "commitment_loss", "ema_codebook_update",
           "reconstruction_loss", "hinge_discriminator_loss", "hinge_generator_loss", "psnr"]


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²), per example, summed over every
    latent dimension (Kingma & Welling 2014, Appx. B, the negative of their −D_KL term)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """k(x) = argmin_j ‖z_e(x) − e_j‖² for each vector ``z`` (N, D) against the codebook (K, D)
    (van den Oord et al. 2017, Eq. 1). Returns int64 indices (N,)."""
    d = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)[None]
    return d.argmin(1)


def straight_through(z_e: Tensor, z_q: Tensor) -> Tensor:
    """z_e + sg[z_q − z_e]: the value of the quantised z_q, the gradient of z_e (the decoder's gradient
    is copied to the encoder; van den Oord et al. 2017, Sec. 3.2)."""
    return z_e + (z_q - z_e).detach()


def commitment_loss(z_e: Tensor, z_q: Tensor) -> Tensor:
    """‖z_e(x) − sg[e]‖², per example summed over the latent (the third term of van den Oord et al.
    2017, Eq. 3, before its weight β). With EMA codebook updates the second term, ‖sg[z_e] − e‖², is
    replaced by the moving averages of :func:`ema_codebook_update`."""
    return (z_e - z_q.detach()).pow(2).flatten(1).sum(1)


def ema_codebook_update(cluster_size: Tensor, embed_sum: Tensor, z: Tensor, codes: Tensor, decay: float,
                        eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """One EMA step of the codebook (van den Oord et al. 2017, Appx. A.1, Eqs. 6-8):

        N_i ← γ N_i + (1 − γ) n_i,   m_i ← γ m_i + (1 − γ) Σ_{j: k(j) = i} z_j,   e_i = m_i / N_i,

    n_i being how many of the vectors ``z`` (N, D) were assigned to code i. N_i is Laplace-smoothed,
    Ñ_i = (N_i + ε) / (Σ N + K ε) · Σ N, before dividing, so a code that never wins keeps a finite
    value (as in the Sonnet VQ-VAE-EMA). Returns (N, m, codebook)."""
    k = cluster_size.shape[0]
    one_hot = F.one_hot(codes, k).to(z.dtype)  # (N, K)
    cluster_size = decay * cluster_size + (1 - decay) * one_hot.sum(0)
    embed_sum = decay * embed_sum + (1 - decay) * one_hot.T @ z
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + k * eps) * total
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


def reconstruction_loss(x: Tensor, x_rec: Tensor, kind: str = "l1") -> Tensor:
    """‖x − x̂‖₁ or ‖x − x̂‖₂², per example summed over pixels (Rombach et al. 2022, Eq. 25's L_rec,
    here without the perceptual term: no pretrained VGG ships with difflab)."""
    diff = x - x_rec
    return (diff.abs() if kind == "l1" else diff.pow(2)).flatten(1).sum(1)


def hinge_discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """½ (E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))]): the hinge loss of a patch discriminator (Lim & Ye
    2017; the discriminator loss of Esser et al. 2021 and Rombach et al. 2022)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_generator_loss(logits_fake: Tensor) -> Tensor:
    """−E[D(x̂)]: the autoencoder's adversarial term under the hinge loss."""
    return -logits_fake.mean()


def psnr(x: Tensor, x_rec: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio 10 log₁₀(peak² / MSE) per example, in dB, of images in [0, peak]."""
    mse = (x.double() - x_rec.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(peak ** 2 / mse.clamp_min(1e-20))
