"""The noise-aware classifier of classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat
GANs on Image Synthesis", Sec. 4 and Appx. C: the downsampling half of the U-Net, then attention pooling).

Layout, for ``channel_mult = (m_0, ..., m_{L-1})`` and ``C = base_channels`` (the U-Net's own blocks,
:mod:`difflab.models.unet`, so the two networks cannot drift apart):

* time embedding: sinusoids of width ``C`` -> Linear(C, 4C) -> SiLU -> Linear(4C, 4C), as in the U-Net;
* ``conv_in``: conv3x3 to ``C`` channels;
* down path: at level ``l``, ``num_res_blocks`` ResBlocks to ``m_l * C`` channels, each followed by
  self-attention when the level's size is in ``attention_resolutions``; then (except at the last
  level) a stride-2 conv3x3;
* middle: ResBlock, attention, ResBlock;
* out: GroupNorm -> SiLU -> :class:`AttentionPool2d` to ``num_classes`` logits.

The classifier sees exactly what the diffusion network sees: ``x_t`` (scaled by the schedule's
input scale) and the schedule's model time, so it models p_φ(y | x_t) at every noise level.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.errors import DifflabError
from difflab.models.options import signature_defaults
from difflab.models.embedding import expand_timesteps, timestep_embedding
from difflab.models.unet import AttentionBlock, Downsample, ResBlock, _group_norm

__all__ = ["NoisyClassifier", "AttentionPool2d", "CLASSIFIER_DEFAULTS", "complete_classifier_config", "build_classifier"]

class AttentionPool2d(nn.Module):
    """Attention pooling of a feature map to one vector (ADM's ``AttentionPool2d``, after CLIP).

    The ``H·W`` positions and their mean form ``1 + H·W`` tokens; a learned positional embedding is
    added, multi-head attention runs over them (one Linear for q, k, v; scale 1/√head_dim), and the
    output projection of the first token (the mean's) is the result, ``(B, out_channels)``.
    """

    def __init__(self, spatial: int, channels: int, num_heads: int, out_channels: int):
        super().__init__()
        if channels % num_heads:
            raise DifflabError(f"classifier option 'num_heads' = {num_heads} must divide the pooled channels {channels}.")
        self.spatial = spatial
        self.num_heads = num_heads
        self.pos_embed = nn.Parameter(torch.randn(spatial * spatial + 1, channels) / channels**0.5)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = nn.Linear(channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        if hgt != self.spatial or wid != self.spatial:
            raise DifflabError(f"attention pooling expects {self.spatial}x{self.spatial} features, got {hgt}x{wid}.")
        tokens = x.reshape(b, c, hgt * wid).transpose(1, 2)                      # (B, L, C)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self.pos_embed
        n, d, length = self.num_heads, c // self.num_heads, tokens.shape[1]
        q, k, v = self.qkv(tokens).reshape(b, length, 3, n, d).permute(2, 0, 3, 1, 4)  # each (B, n, L+1, d)
        a = F.scaled_dot_product_attention(q[:, :, :1], k, v)                    # only the mean token's output
        return self.proj_out(a.transpose(1, 2).reshape(b, c))


def _fail(name: str, value, expected: str) -> DifflabError:
    return DifflabError(f"classifier option '{name}' = {value!r} is invalid: expected {expected}.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class NoisyClassifier(nn.Module):
    """Logits of p_φ(y | x_t): maps ``x`` ``(B, in_channels, image_size, image_size)`` and times ``t``
    ``(B,)`` (or a scalar) to ``(B, num_classes)``. ``config`` holds the options it was built with,
    ``image_size``, ``in_channels`` and ``num_classes`` are attributes, so a mismatch with a diffusion
    model can be named before sampling."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        base_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (7,),
        dropout: float = 0.0,
        num_heads: int = 1,
        groups: int = 32,
    ):
        super().__init__()
        if not _is_int(num_classes) or num_classes < 2:
            raise _fail("num_classes", num_classes, "an integer >= 2")
        for name, value in (("in_channels", in_channels), ("image_size", image_size), ("base_channels", base_channels),
                            ("num_res_blocks", num_res_blocks), ("num_heads", num_heads), ("groups", groups)):
            if not _is_int(value) or value < 1:
                raise _fail(name, value, "an integer >= 1")
        if isinstance(channel_mult, (str, bytes)) or not isinstance(channel_mult, Sequence) or not channel_mult \
                or not all(_is_int(m) and m >= 1 for m in channel_mult):
            raise _fail("channel_mult", channel_mult, "a non-empty list of positive integers")
        if isinstance(attention_resolutions, (str, bytes)) or not isinstance(attention_resolutions, Sequence):
            raise _fail("attention_resolutions", attention_resolutions, "a list of integers")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise _fail("dropout", dropout, "a number in [0, 1)")
        channel_mult, attention_resolutions = tuple(channel_mult), tuple(attention_resolutions)
        factor = 2 ** (len(channel_mult) - 1)
        if image_size % factor:
            raise _fail("image_size", image_size, f"a multiple of 2**(len(channel_mult)-1) = {factor}")
        resolutions = [image_size // 2**lvl for lvl in range(len(channel_mult))]
        if any(r not in resolutions for r in attention_resolutions):
            raise _fail("attention_resolutions", list(attention_resolutions),
                        f"sizes among the resolutions the network visits {resolutions}")

        self.config = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size,
                       "base_channels": base_channels, "channel_mult": list(channel_mult),
                       "num_res_blocks": num_res_blocks, "attention_resolutions": list(attention_resolutions),
                       "dropout": float(dropout), "num_heads": num_heads, "groups": groups}
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.base_channels = base_channels

        emb_ch = 4 * base_channels
        self.time_embed = nn.Sequential(nn.Linear(base_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        ch = base_channels
        self.down = nn.ModuleList()  # ResBlock, AttentionBlock or Downsample, in order
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                self.down.append(ResBlock(ch, out, emb_ch, dropout, groups))
                if resolutions[level] in attention_resolutions:
                    self.down.append(AttentionBlock(out, num_heads, groups))
                ch = out
            if level != len(channel_mult) - 1:
                self.down.append(Downsample(ch))
        self.mid1 = ResBlock(ch, ch, emb_ch, dropout, groups)
        self.mid_attn = AttentionBlock(ch, num_heads, groups)
        self.mid2 = ResBlock(ch, ch, emb_ch, dropout, groups)
        self.norm_out = _group_norm(ch, groups)
        self.pool = AttentionPool2d(resolutions[-1], ch, num_heads, num_classes)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        want = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise DifflabError(f"the classifier takes images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}.")
        t = expand_timesteps(t, x.shape[0], x.device)
        emb = F.silu(self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype)))
        h = self.conv_in(x)
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        return self.pool(F.silu(self.norm_out(h)))


#: The classifier's options and their defaults, from its signature (``num_classes`` must be set, or filled in from
#: the data).
CLASSIFIER_DEFAULTS: dict = signature_defaults(NoisyClassifier)


def complete_classifier_config(config: dict) -> dict:
    """``config`` with every option filled in from :data:`CLASSIFIER_DEFAULTS`; an unknown key is named.
    A ``type: classifier`` entry is accepted and kept."""
    if not isinstance(config, dict):
        raise DifflabError(f"the classifier's model config must be a mapping, got {type(config).__name__}.")
    if config.get("type", "classifier") != "classifier":
        raise DifflabError(f"the classifier's model type must be 'classifier', got {config['type']!r}.")
    for key in config:
        if key != "type" and key not in CLASSIFIER_DEFAULTS:
            raise DifflabError(f"classifier config key '{key}' is not an option of the classifier; valid keys are "
                               f"{['type', *CLASSIFIER_DEFAULTS]}.")
    full = {"type": "classifier", **copy.deepcopy(CLASSIFIER_DEFAULTS)}
    full.update({k: copy.deepcopy(v) for k, v in config.items() if k != "type"})
    return full


def build_classifier(config: dict) -> NoisyClassifier:
    """The :class:`NoisyClassifier` a JSON-able config describes (missing options take the defaults)."""
    full = complete_classifier_config(config)
    full.pop("type")
    if full["num_classes"] is None:
        raise DifflabError("the classifier config needs 'num_classes' (the number of classes it predicts).")
    return NoisyClassifier(**full)
