"""The first stage of latent diffusion: a convolutional autoencoder (Rombach et al. 2022, Sec. 3.1,
Appx. G), KL- or VQ-regularised, and the patch discriminator that may sharpen its reconstructions.

Layout, for ``channel_mult = (m_0, ..., m_{L-1})`` and ``C = channels``: the image, padded with background (−1) by
``pad = [p_h, p_w]`` pixels at the top and bottom and at the left and right, goes through conv3x3 to C channels, then at each level
``num_res_blocks`` ResBlocks (GN, SiLU, conv3x3, twice, plus the input) to ``m_l C`` channels and,
except at the last level, a stride-2 conv3x3; then GN, SiLU, conv3x3 to the latent. So an image of
H x W becomes a latent of ``latent_channels`` x (H + 2 p_h)/2^(L−1) x (W + 2 p_w)/2^(L−1). The decoder
mirrors it with nearest x2 upsampling + conv3x3, and crops the padding off again. (For the 28 x 56
two-digit canvas, ``pad = [2, 4]`` and three levels give a 4 x 8 x 16 latent that a U-Net can halve once
more.)

* ``type: kl``: the encoder outputs the mean and log-variance of q(z | x) = N(μ, diag σ²); training
  decodes a draw z = μ + σ ε and pays :func:`~difflab.regularizers.kl_to_standard_normal`;
  :meth:`KLAutoencoder.encode` returns the mean (the posterior's mode).
* ``type: vq``: the encoder's output z_e is snapped to the nearest of ``codebook_size`` codes by
  :class:`VectorQuantizer` (straight-through gradient, commitment loss, EMA codebook). As in latent
  diffusion, :meth:`VQAutoencoder.encode` returns z_e *before* quantisation and :meth:`decode`
  quantises first: the diffusion model works on the continuous z_e and the quantiser is part of the
  decoder (Rombach et al. 2022, Sec. 3.1).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab import regularizers
from difflab.errors import DifflabError

__all__ = ["AUTOENCODER_DEFAULTS", "KLAutoencoder", "VQAutoencoder", "VectorQuantizer", "PatchDiscriminator",
           "build_autoencoder", "complete_autoencoder_config"]

AUTOENCODER_DEFAULTS: dict = {
    "type": "kl", "in_channels": 1, "image_height": 28, "image_width": 56, "pad": [2, 4], "channels": 32,
    "channel_mult": [1, 2, 2], "num_res_blocks": 1, "latent_channels": 4, "groups": 8,
    "codebook_size": 256, "codebook_decay": 0.99,
}


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6)


class _ResBlock(nn.Module):
    """GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, plus the input (1x1 conv when the width changes)."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(_norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                   _norm(cout, groups), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """Image (B, C, H, W) in [−1, 1] -> (B, out_channels, h, w)."""

    def __init__(self, in_channels: int, channels: int, channel_mult, num_res_blocks: int, out_channels: int,
                 groups: int, pad: int):
        super().__init__()
        self.pad = pad
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        ch = channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers.append(_ResBlock(ch, channels * mult, groups))
                ch = channels * mult
            if level != len(channel_mult) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        layers += [_norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self.pad
        return self.net(F.pad(x, (pw, pw, ph, ph), value=-1.0))


class Decoder(nn.Module):
    """Latent (B, latent_channels, h, w) -> image (B, C, H, W), the encoder's padding cropped off."""

    def __init__(self, out_channels: int, channels: int, channel_mult, num_res_blocks: int, latent_channels: int,
                 groups: int, pad: int):
        super().__init__()
        self.pad = pad
        ch = channels * channel_mult[-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, ch, 3, padding=1)]
        for level in reversed(range(len(channel_mult))):
            for _ in range(num_res_blocks):
                layers.append(_ResBlock(ch, channels * channel_mult[level], groups))
                ch = channels * channel_mult[level]
            if level != 0:
                layers.append(_Upsample(ch))
        layers += [_norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(z)
        ph, pw = self.pad
        return x[..., ph:x.shape[-2] - ph, pw:x.shape[-1] - pw]


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with an EMA codebook (van den Oord et al. 2017, Sec. 3.1 and Appx. A.1).

    Buffers: ``codebook`` (K, D) e_i, ``cluster_size`` (K,) N_i, ``embed_sum`` (K, D) m_i, and
    ``initialized``. On its first training batch the codebook is set to K of the batch's encoder
    outputs (drawn without replacement, with repetition when the batch holds fewer), so every code
    starts where the data are; N_i = 1 and m_i = e_i then, and each later training batch applies
    :func:`~difflab.regularizers.ema_codebook_update`. In eval mode the codebook stays fixed.
    """

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.num_codes, self.dim, self.decay, self.eps = num_codes, dim, decay, eps
        self.register_buffer("codebook", torch.randn(num_codes, dim))
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _flatten(self, z: Tensor) -> Tensor:
        return z.permute(0, 2, 3, 1).reshape(-1, self.dim)

    def codes(self, z_e: Tensor) -> Tensor:
        """The index of the nearest code at every latent position, (B, h, w)."""
        b, _, h, w = z_e.shape
        return regularizers.nearest_codes(self._flatten(z_e), self.codebook).reshape(b, h, w)

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (B, h, w) -> their vectors (B, D, h, w)."""
        return self.codebook[codes].permute(0, 3, 1, 2)

    @torch.no_grad()
    def _update(self, z_e: Tensor, codes: Tensor) -> None:
        flat = self._flatten(z_e).detach().float()
        if not bool(self.initialized):
            n = flat.shape[0]
            pick = torch.randperm(n)[: self.num_codes] if n >= self.num_codes else torch.randint(n, (self.num_codes,))
            self.codebook.copy_(flat[pick])
            self.embed_sum.copy_(flat[pick])
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
            return
        size, total, book = regularizers.ema_codebook_update(self.cluster_size, self.embed_sum, flat,
                                                             codes.reshape(-1), self.decay, self.eps)
        self.cluster_size.copy_(size)
        self.embed_sum.copy_(total)
        self.codebook.copy_(book)

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(z_q with the straight-through gradient, codes (B, h, w), commitment loss per example)."""
        if self.training:
            self._update(z_e, self.codes(z_e))
        codes = self.codes(z_e)
        z_q = self.lookup(codes)
        return regularizers.straight_through(z_e, z_q), codes, regularizers.commitment_loss(z_e, z_q)


class KLAutoencoder(nn.Module):
    """KL-regularised autoencoder: ``forward(x, generator)`` -> (x̂, KL per example)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.config = cfg
        c = cfg
        self.encoder = Encoder(c["in_channels"], c["channels"], c["channel_mult"], c["num_res_blocks"],
                               2 * c["latent_channels"], c["groups"], c["pad"])
        self.decoder = Decoder(c["in_channels"], c["channels"], c["channel_mult"], c["num_res_blocks"],
                               c["latent_channels"], c["groups"], c["pad"])

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x) (the log-variance clamped to [−30, 20] for stability)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: Tensor) -> Tensor:
        return self.moments(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mean, logvar = self.moments(x)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        z = mean + (0.5 * logvar).exp() * noise
        return self.decoder(z), regularizers.kl_to_standard_normal(mean, logvar)


class VQAutoencoder(nn.Module):
    """VQ-regularised autoencoder: ``forward(x)`` -> (x̂, commitment loss per example)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.config = cfg
        c = cfg
        self.encoder = Encoder(c["in_channels"], c["channels"], c["channel_mult"], c["num_res_blocks"],
                               c["latent_channels"], c["groups"], c["pad"])
        self.quantizer = VectorQuantizer(c["codebook_size"], c["latent_channels"], c["codebook_decay"])
        self.decoder = Decoder(c["in_channels"], c["channels"], c["channel_mult"], c["num_res_blocks"],
                               c["latent_channels"], c["groups"], c["pad"])

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.quantizer.lookup(self.quantizer.codes(z)))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        z_q, _, commitment = self.quantizer(self.encoder(x))
        return self.decoder(z_q), commitment


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2): strided 4x4 convs with LeakyReLU(0.2),
    one logit per overlapping patch, (B, 1, h', w')."""

    def __init__(self, in_channels: int = 1, channels: int = 32, layers: int = 2, groups: int = 8):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), _norm(2 * ch, groups), nn.LeakyReLU(0.2)]
            ch *= 2
        mods.append(nn.Conv2d(ch, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def complete_autoencoder_config(config: dict) -> dict:
    """``config`` with every option filled in from :data:`AUTOENCODER_DEFAULTS`, each checked."""
    if not isinstance(config, dict):
        raise DifflabError(f"the autoencoder's model config must be a mapping, got {type(config).__name__}.")
    for key in config:
        if key not in AUTOENCODER_DEFAULTS:
            raise DifflabError(f"unknown autoencoder model key {key!r}; expected one of {', '.join(AUTOENCODER_DEFAULTS)}.")
    full = {**copy.deepcopy(AUTOENCODER_DEFAULTS), **copy.deepcopy(config)}
    if full["type"] not in ("kl", "vq"):
        raise DifflabError(f"autoencoder model.type must be 'kl' or 'vq', got {full['type']!r}.")
    for key in ("in_channels", "image_height", "image_width", "channels", "num_res_blocks", "latent_channels",
                "groups", "codebook_size"):
        v = full[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DifflabError(f"autoencoder model.{key} must be a positive integer, got {v!r}.")
    pad = full["pad"]
    if not isinstance(pad, list) or len(pad) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0
                                                             for p in pad):
        raise DifflabError(f"autoencoder model.pad must be [rows, columns] of integers >= 0, got {pad!r}.")
    mult = full["channel_mult"]
    if not isinstance(mult, list) or not mult or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0
                                                         for m in mult):
        raise DifflabError(f"autoencoder model.channel_mult must be a non-empty list of positive integers, got {mult!r}.")
    factor = 2 ** (len(mult) - 1)
    for side, p in (("image_height", pad[0]), ("image_width", pad[1])):
        if (full[side] + 2 * p) % factor:
            raise DifflabError(f"autoencoder model.{side} + 2 x its padding = {full[side] + 2 * p} must be a multiple of "
                               f"2**(len(channel_mult)-1) = {factor}; change model.pad.")
    if not 0 < full["codebook_decay"] < 1:
        raise DifflabError(f"autoencoder model.codebook_decay must be in (0, 1), got {full['codebook_decay']!r}.")
    return full


def latent_shape(config: dict) -> tuple[int, int, int]:
    """(channels, height, width) of the latent of a completed autoencoder config."""
    factor = 2 ** (len(config["channel_mult"]) - 1)
    ph, pw = config["pad"]
    return (config["latent_channels"], (config["image_height"] + 2 * ph) // factor,
            (config["image_width"] + 2 * pw) // factor)


def build_autoencoder(config: dict) -> nn.Module:
    full = complete_autoencoder_config(config)
    return (KLAutoencoder if full["type"] == "kl" else VQAutoencoder)(full)
