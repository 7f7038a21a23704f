"""The DDPM U-Net (Ho et al. 2020, Appendix B; a PixelCNN++-style Wide-ResNet backbone).

Layout, for ``channel_mult = (m_0, ..., m_{L-1})`` and ``C = base_channels``:

* time embedding: sinusoids of width ``C`` -> Linear(C, 4C) -> SiLU -> Linear(4C, 4C);
* class conditioning (``num_classes`` = K): a learned embedding of the label, one of K classes or
  the null label K, added to the time embedding (Dhariwal & Nichol 2021, Sec. 4; the null label
  is the unconditional model of classifier-free guidance, Ho & Salimans 2022, Sec. 3.2);
* ``conv_in``: conv3x3 to ``C`` channels;
* down path: at level ``l`` (spatial size ``image_size / 2**l``), ``num_res_blocks`` ResBlocks to
  ``m_l * C`` channels, each followed by self-attention when the level's size is listed in
  ``attention_resolutions``; then (except at the last level) a stride-2 conv3x3. Every
  ResBlock(+attention) output and every downsample output is kept as a skip, plus the output
  of ``conv_in``;
* middle: ResBlock, attention, ResBlock;
* up path: levels in reverse, ``num_res_blocks + 1`` ResBlocks per level, each taking the
  concatenation ``[h, skip]`` of the current features and the most recent unused skip, each
  optionally followed by attention; then (except at level 0) nearest x2 upsampling + conv3x3;
* out: GroupNorm -> SiLU -> conv3x3 to ``out_channels``.

The ADM options of Dhariwal & Nichol 2021 (Sec. 3), each a config switch, default off (= DDPM):
``num_head_channels`` (a fixed width per attention head instead of ``num_heads`` heads; attention
at several resolutions is ``attention_resolutions`` with several sizes), ``resblock_updown``
(BigGAN-style ResBlocks do the down- and upsampling), ``scale_shift_norm`` (AdaGN: the embedding
scales and shifts the second GroupNorm instead of being added) and ``rescale_residuals`` (every
ResBlock's sum divided by √2).

Image conditioning (``cond_channels`` = C' > 0, default 0): ``forward(x, t, y, cond=c)`` concatenates
an image ``c`` of C' channels and the same size to ``x`` before ``conv_in``, the conditioning of SR3
(Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement", Sec. 2.3: the bicubically
upsampled low-resolution image beside x_t).

Cross-attention (``context_dim`` = D, ``cross_attention_resolutions``): after the (self-)attention slot of
every stage at the listed sizes, and in the middle, a :class:`CrossAttention` block lets image features
attend to condition tokens ``context`` (B, L, D) with a padding mask ``context_mask`` (B, L), as latent
diffusion conditions on text (Rombach et al. 2022, Sec. 3.3); ``forward(x, t, context=..., context_mask=...)``.

As in DDPM, the last conv of every ResBlock, the output projection of every attention block
and the output conv are zero-initialised, so an untrained network outputs exactly zero and
every block starts as the identity (or its skip projection).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.errors import DifflabError
from difflab.models.embedding import expand_timesteps, timestep_embedding

__all__ = ["UNet", "ResBlock", "AttentionBlock", "CrossAttention", "Downsample", "Upsample"]


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with ``min(groups, channels)`` groups (which must divide it)."""
    g = min(groups, channels)
    if channels % g:
        raise DifflabError(
            f"UNet option 'groups' = {groups} is invalid: min(groups, {channels}) = {g} must divide "
            f"every normalised channel count, including {channels}."
        )
    return nn.GroupNorm(g, channels, eps=1e-6)


def _zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _resample(x: Tensor, mode: str | None) -> Tensor:
    """The resampling inside a BigGAN-style ResBlock: 2x2 average pooling ("down") or nearest x2 ("up")."""
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x


class ResBlock(nn.Module):
    """Wide-ResNet block with timestep conditioning (DDPM ``resnet_block``; ADM options of
    Dhariwal & Nichol 2021, Sec. 3).

    ``GN -> SiLU -> conv3x3``, then the embedding ``e = Linear(SiLU(temb))``, then
    ``GN -> SiLU -> dropout -> conv3x3`` (zero-init), plus the input (1x1 conv when the channel
    count changes). The embedding enters either by addition, ``h + e`` (DDPM), or, with
    ``scale_shift`` (AdaGN, ADM Sec. 3), as ``GN(h)·(1 + y_s) + y_b`` with ``(y_s, y_b) = e``.
    ``resample`` = "down" / "up" makes it a BigGAN-style resampling block (Brock et al. 2019, used
    by ADM): both paths are average-pooled / nearest-upsampled after the first GN-SiLU.
    ``rescale``: the sum is divided by √2 (BigGAN, NCSN++ and ADM's rescaled residuals).

    ``forward(x, emb)`` expects ``emb`` already passed through SiLU (the U-Net applies it once
    for all blocks).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float, groups: int,
                 scale_shift: bool = False, resample: str | None = None, rescale: bool = False):
        super().__init__()
        if resample not in (None, "up", "down"):
            raise DifflabError(f"ResBlock resample must be None, 'up' or 'down', got {resample!r}.")
        self.scale_shift, self.resample, self.rescale = scale_shift, resample, rescale
        self.norm1 = _group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        self.norm2 = _group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        if self.resample is not None:
            h, x = _resample(h, self.resample), _resample(x, self.resample)
        h = self.conv1(h)
        e = self.emb_proj(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        out = (x if self.skip is None else self.skip(x)) + h
        return out * (2 ** -0.5) if self.rescale else out


class AttentionBlock(nn.Module):
    """Multi-head self-attention over spatial positions, with a residual connection.

    ``GN``, then q, k, v by one 1x1 projection (a Linear over channels), scaled dot-product
    attention per head (``torch.nn.functional.scaled_dot_product_attention``, scale
    ``1/sqrt(head_dim)``), output 1x1 projection (zero-init), added to the input.
    """

    def __init__(self, channels: int, num_heads: int, groups: int, head_channels: int | None = None):
        super().__init__()
        if head_channels is not None:  # a fixed width per head (ADM's num_head_channels), the heads follow
            if channels % head_channels:
                raise DifflabError(f"UNet option 'num_head_channels' = {head_channels} must divide the attention "
                                   f"channels {channels}.")
            num_heads = channels // head_channels
        if channels % num_heads:
            raise DifflabError(
                f"UNet option 'num_heads' = {num_heads} must divide the attention channels {channels}."
            )
        self.channels = channels
        self.num_heads = num_heads
        self.norm = _group_norm(channels, groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = _zero_(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        n, d = self.num_heads, c // self.num_heads
        seq = self.norm(x).reshape(b, c, hgt * wid).transpose(1, 2)  # (B, L, C)
        qkv = self.qkv(seq).reshape(b, hgt * wid, 3, n, d).permute(2, 0, 3, 1, 4)  # (3, B, n, L, d)
        q, k, v = qkv.unbind(0)  # one backward stack, not three zero-filled index backwards
        a = F.scaled_dot_product_attention(q, k, v)  # (B, n, L, d)
        a = self.proj_out(a.transpose(1, 2).reshape(b, hgt * wid, c))  # (B, L, C)
        return x + a.transpose(1, 2).reshape(b, c, hgt, wid)


class CrossAttention(nn.Module):
    """Multi-head cross-attention from image features to condition tokens, with a residual connection
    (Rombach et al. 2022, Sec. 3.3, Eq. 3: Attention(Q, K, V) = softmax(Q Kᵀ / √d) V with
    Q = W_Q φ(z_t) from the (GroupNorm'ed) image features and K = W_K τ(y), V = W_V τ(y) from the tokens).

    ``forward(x, context, mask)``: x (B, C, H, W), context (B, L, D), mask (B, L) boolean, True for a
    real token; padded tokens get no attention weight, so they change nothing. A row with no token at
    all leaves its features unchanged. The output projection is zero-initialised.
    """

    def __init__(self, channels: int, context_dim: int, num_heads: int, groups: int, head_channels: int | None = None):
        super().__init__()
        if head_channels is not None:
            if channels % head_channels:
                raise DifflabError(f"UNet option 'num_head_channels' = {head_channels} must divide the cross-attention "
                                   f"channels {channels}.")
            num_heads = channels // head_channels
        if channels % num_heads:
            raise DifflabError(f"UNet option 'num_heads' = {num_heads} must divide the cross-attention channels {channels}.")
        self.num_heads = num_heads
        self.norm = _group_norm(channels, groups)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj_out = _zero_(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        b, c, hgt, wid = x.shape
        n, d, length = self.num_heads, c // self.num_heads, context.shape[1]
        seq = self.norm(x).reshape(b, c, hgt * wid).transpose(1, 2)  # (B, HW, C)
        q = self.q(seq).reshape(b, hgt * wid, n, d).transpose(1, 2)  # (B, n, HW, d)
        k, v = self.kv(context.to(x.dtype)).reshape(b, length, 2, n, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, n, L, d)
        attn_mask = None
        if mask is not None:
            mask = mask.bool()
            empty = ~mask.any(1)  # rows without a token: attend to all (finite), then drop the update
            attn_mask = (mask | empty[:, None])[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, n, HW, d)
        a = self.proj_out(a.transpose(1, 2).reshape(b, hgt * wid, c)).transpose(1, 2).reshape(b, c, hgt, wid)
        if mask is not None:
            a = a * (~empty).to(a.dtype)[:, None, None, None]
        return x + a


class Downsample(nn.Module):
    """Stride-2 conv3x3 (halves the spatial size)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


def _phase_kernels(w: Tensor) -> list[list[Tensor]]:
    """The 2x2 kernels ``k[a][c]`` of a 3x3 conv applied after nearest x2 upsampling.

    Output pixel ``(2i + a, 2j + c)`` of ``conv3x3(upsample(x))`` sees upsampled rows
    ``2i + a - 1 .. 2i + a + 1``, i.e. input rows ``(i - 1, i, i)`` for ``a = 0`` and
    ``(i, i, i + 1)`` for ``a = 1`` (and the same for columns), so along each axis the three taps
    ``(w0, w1, w2)`` collapse to two: ``(w0, w1 + w2)`` on rows ``(i - 1, i)`` when ``a = 0`` and
    ``(w0 + w1, w2)`` on rows ``(i, i + 1)`` when ``a = 1``.
    """
    rows = (torch.stack((w[..., 0, :], w[..., 1, :] + w[..., 2, :]), dim=-2),
            torch.stack((w[..., 0, :] + w[..., 1, :], w[..., 2, :]), dim=-2))
    return [[torch.stack((r[..., 0], r[..., 1] + r[..., 2]), dim=-1),
             torch.stack((r[..., 0] + r[..., 1], r[..., 2]), dim=-1)] for r in rows]


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by conv3x3.

    Computed without building the upsampled map: each of the four output phases
    ``(2i + a, 2j + c)`` is a 2x2 conv of the input with kernels summed from the 3x3 weights
    (:func:`_phase_kernels`), which does 16 instead of 36 multiply-adds per input pixel and
    channel pair. The function, the parameters (``conv.weight``, ``conv.bias``) and their
    gradients are those of ``conv(interpolate(x, scale_factor=2, mode="nearest"))``; only the
    floating-point summation order differs (agreement to rounding, ~1e-6 relative in float32).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, hgt, wid = x.shape
        k = _phase_kernels(self.conv.weight)
        # phase (a, c) reads input rows (i - 1, i) or (i, i + 1): pad one side, 2x2 conv, no padding
        ys = [[F.conv2d(F.pad(x, (1 - c, c, 1 - a, a)), k[a][c], self.conv.bias) for c in (0, 1)] for a in (0, 1)]
        o = ys[0][0].shape[1]
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            out = ys[0][0].new_empty(b, o, hgt, 2, wid, 2)
            for a in (0, 1):
                for c in (0, 1):
                    out[:, :, :, a, :, c] = ys[a][c]
            return out.view(b, o, 2 * hgt, 2 * wid)
        out = ys[0][0].new_empty(b, hgt, 2, wid, 2, o)  # channels_last in, channels_last out
        for a in (0, 1):
            for c in (0, 1):
                out[:, :, a, :, c, :] = ys[a][c].permute(0, 2, 3, 1)
        return out.view(b, 2 * hgt, 2 * wid, o).permute(0, 3, 1, 2)


class _Stage(nn.Module):
    """ResBlock, then optional attention, then optional upsampling."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None = None, up: Upsample | ResBlock | None = None,
                 cross: CrossAttention | None = None):
        super().__init__()
        self.res = res
        self.attn = attn
        self.up = up
        self.cross = cross

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h = self.res(x, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross is not None:
            h = self.cross(h, context, mask)
        if self.up is not None:
            h = self.up(h, emb) if isinstance(self.up, ResBlock) else self.up(h)
        return h


def _fail(name: str, value, expected: str) -> DifflabError:
    return DifflabError(f"UNet option '{name}' = {value!r} is invalid: expected {expected}.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class UNet(nn.Module):
    """The DDPM U-Net: maps ``x`` of shape ``(B, in_channels, H, W)`` and times ``t`` of shape
    ``(B,)`` (or a scalar) to ``(B, out_channels, H, W)``.

    ``H`` and ``W`` are normally ``image_size``; other sizes divisible by
    ``2**(len(channel_mult)-1)`` also run (attention stays at the levels chosen for
    ``image_size``). Bad options raise :class:`difflab.errors.DifflabError` naming the option.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 28,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (14,),
        dropout: float = 0.1,
        num_heads: int = 1,
        groups: int = 32,
        num_classes: int | None = None,
        num_head_channels: int | None = None,
        resblock_updown: bool = False,
        scale_shift_norm: bool = False,
        rescale_residuals: bool = False,
        cond_channels: int = 0,
        context_dim: int | None = None,
        cross_attention_resolutions: Sequence[int] = (),
    ):
        super().__init__()
        for name, value, lo in (
            ("in_channels", in_channels, 1),
            ("image_size", image_size, 1),
            ("base_channels", base_channels, 1),
            ("num_res_blocks", num_res_blocks, 1),
            ("num_heads", num_heads, 1),
            ("groups", groups, 1),
            ("cond_channels", cond_channels, 0),
        ):
            if not _is_int(value) or value < lo:
                raise _fail(name, value, f"an integer >= {lo}")
        if num_head_channels is not None and (not _is_int(num_head_channels) or num_head_channels < 1):
            raise _fail("num_head_channels", num_head_channels, "a positive integer, or None to use num_heads")
        for name, value in (("resblock_updown", resblock_updown), ("scale_shift_norm", scale_shift_norm),
                            ("rescale_residuals", rescale_residuals)):
            if not isinstance(value, bool):
                raise _fail(name, value, "true or false")
        if num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
            raise _fail("num_classes", num_classes, "a positive integer, or None for an unconditional model")
        if out_channels is None:
            out_channels = in_channels
        if not _is_int(out_channels) or out_channels < 1:
            raise _fail("out_channels", out_channels, "an integer >= 1 or None")
        if isinstance(channel_mult, (str, bytes)) or not isinstance(channel_mult, Sequence):
            raise _fail("channel_mult", channel_mult, "a non-empty list of positive integers")
        channel_mult = tuple(channel_mult)
        if not channel_mult or not all(_is_int(m) and m >= 1 for m in channel_mult):
            raise _fail("channel_mult", list(channel_mult), "a non-empty list of positive integers")
        if isinstance(attention_resolutions, (str, bytes)) or not isinstance(attention_resolutions, Sequence):
            raise _fail("attention_resolutions", attention_resolutions, "a list of integers")
        attention_resolutions = tuple(attention_resolutions)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise _fail("dropout", dropout, "a number in [0, 1)")
        factor = 2 ** (len(channel_mult) - 1)
        if image_size % factor:
            raise _fail(
                "image_size", image_size,
                f"a multiple of 2**(len(channel_mult)-1) = {factor} so that every level halves exactly",
            )
        resolutions = [image_size // 2**lvl for lvl in range(len(channel_mult))]
        for r in attention_resolutions:
            if r not in resolutions:
                raise _fail(
                    "attention_resolutions", list(attention_resolutions),
                    f"sizes among the resolutions the network visits {resolutions}",
                )
        if context_dim is not None and (not _is_int(context_dim) or context_dim < 1):
            raise _fail("context_dim", context_dim, "a positive integer (the width of condition tokens), or None")
        if isinstance(cross_attention_resolutions, (str, bytes)) or not isinstance(cross_attention_resolutions, Sequence) \
                or any(r not in resolutions for r in cross_attention_resolutions):
            raise _fail("cross_attention_resolutions", cross_attention_resolutions,
                        f"a list of sizes among the resolutions the network visits {resolutions}")
        if cross_attention_resolutions and context_dim is None:
            raise _fail("cross_attention_resolutions", list(cross_attention_resolutions), "[] unless context_dim is set")
        cross_attention_resolutions = tuple(cross_attention_resolutions)

        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "image_size": image_size,
            "base_channels": base_channels,
            "channel_mult": list(channel_mult),
            "num_res_blocks": num_res_blocks,
            "attention_resolutions": list(attention_resolutions),
            "dropout": float(dropout),
            "num_heads": num_heads,
            "groups": groups,
            "num_classes": num_classes,
            "num_head_channels": num_head_channels,
            "resblock_updown": resblock_updown,
            "scale_shift_norm": scale_shift_norm,
            "rescale_residuals": rescale_residuals,
            "context_dim": context_dim,
            "cross_attention_resolutions": list(cross_attention_resolutions),
            "cond_channels": cond_channels,
        }
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base_channels = base_channels
        self._factor = factor
        self.num_classes = num_classes
        self.context_dim = context_dim
        self.cond_channels = cond_channels

        emb_ch = 4 * base_channels
        self.time_embed = nn.Sequential(
            nn.Linear(base_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch)
        )
        # index num_classes is the null label ("no class")
        self.class_embed = nn.Embedding(num_classes + 1, emb_ch) if num_classes else None
        self.conv_in = nn.Conv2d(in_channels + cond_channels, base_channels, 3, padding=1)

        def res_block(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, cout, emb_ch, dropout, groups, scale_shift=scale_shift_norm, resample=resample,
                            rescale=rescale_residuals)

        def attention(channels: int) -> AttentionBlock:
            return AttentionBlock(channels, num_heads, groups, head_channels=num_head_channels)

        def cross_attention(channels: int, res: int | None = None) -> CrossAttention | None:
            """At the listed sizes (res None: the middle, always when context_dim is set)."""
            if context_dim is None or (res is not None and res not in cross_attention_resolutions):
                return None
            return CrossAttention(channels, context_dim, num_heads, groups, head_channels=num_head_channels)

        ch = base_channels
        skip_chs = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            res = resolutions[level]
            for _ in range(num_res_blocks):
                out = base_channels * mult
                attn = attention(out) if res in attention_resolutions else None
                self.down.append(_Stage(res_block(ch, out), attn, cross=cross_attention(out, res)))
                ch = out
                skip_chs.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(res_block(ch, ch, "down") if resblock_updown else Downsample(ch))
                skip_chs.append(ch)

        self.mid = _Stage(res_block(ch, ch), attention(ch), cross=cross_attention(ch))
        self.mid2 = res_block(ch, ch)

        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            res = resolutions[level]
            for i in range(num_res_blocks + 1):
                out = base_channels * channel_mult[level]
                attn = attention(out) if res in attention_resolutions else None
                up = None
                if level != 0 and i == num_res_blocks:
                    up = res_block(out, out, "up") if resblock_updown else Upsample(out)
                self.up.append(_Stage(res_block(ch + skip_chs.pop(), out), attn, up, cross=cross_attention(out, res)))
                ch = out
        assert not skip_chs

        self.norm_out = _group_norm(ch, groups)
        self.conv_out = _zero_(nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None, cond: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """``y``: class labels ``(B,)`` in 0..num_classes, num_classes being the null label; None
        means the null label for a class-conditional network (and is required for an unconditional one).
        ``cond``: the conditioning image ``(B, cond_channels, H, W)``, required exactly when cond_channels > 0."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise DifflabError(
                f"UNet input x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}."
            )
        if x.shape[2] % self._factor or x.shape[3] % self._factor:
            raise DifflabError(
                f"UNet input height and width must be multiples of {self._factor}, got {tuple(x.shape[2:])}."
            )
        t = expand_timesteps(t, x.shape[0], x.device)
        emb = self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype))
        if self.class_embed is not None:
            emb = emb + self.class_embed(self._labels(y, x.shape[0], x.device))
        elif y is not None:
            raise DifflabError("this UNet is unconditional (num_classes is None) but class labels were given.")
        emb = F.silu(emb)  # every ResBlock starts its projection with SiLU
        self._check_context(context, context_mask, x.shape[0])

        h = self.conv_in(self._with_cond(x, cond))
        hs = [h]
        for block in self.down:
            h = block(h, emb, context, context_mask) if isinstance(block, _Stage) else block(h, emb)
            hs.append(h)
        h = self.mid2(self.mid(h, emb, context, context_mask), emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context, context_mask)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_context(self, context: Tensor | None, mask: Tensor | None, batch: int) -> None:
        """Condition tokens (B, L, context_dim) and their mask (B, L), required exactly when context_dim is set."""
        if self.context_dim is None:
            if context is not None:
                raise DifflabError("this UNet has no cross-attention (context_dim is None) but condition tokens were given.")
            return
        if context is None or context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.context_dim:
            got = "none" if context is None else f"shape {tuple(context.shape)}"
            raise DifflabError(f"this UNet cross-attends to condition tokens of shape ({batch}, L, {self.context_dim}), got {got}.")
        if mask is not None and tuple(mask.shape) != tuple(context.shape[:2]):
            raise DifflabError(f"the condition tokens' mask must have shape {tuple(context.shape[:2])}, got {tuple(mask.shape)}.")

    def _with_cond(self, x: Tensor, cond: Tensor | None) -> Tensor:
        """``x``, with the conditioning image (B, cond_channels, H, W) concatenated when the network takes one."""
        if not self.cond_channels:
            if cond is not None:
                raise DifflabError("this UNet takes no conditioning image (cond_channels = 0) but one was given.")
            return x
        want = (x.shape[0], self.cond_channels, *x.shape[2:])
        if cond is None or tuple(cond.shape) != want:
            got = "none" if cond is None else f"shape {tuple(cond.shape)}"
            raise DifflabError(f"this UNet is conditioned on an image of shape {want} (cond_channels = "
                               f"{self.cond_channels}), got {got}.")
        return torch.cat([x, cond.to(x.dtype)], dim=1)

    def _labels(self, y: Tensor | None, batch: int, device) -> Tensor:
        """Labels as int64 ``(B,)``: None -> the null label; checked against 0..num_classes."""
        k = self.num_classes
        if y is None:
            return torch.full((batch,), k, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device)
        if y.ndim == 0:
            y = y.expand(batch)
        if y.shape != (batch,) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise DifflabError(f"class labels must be integers of shape ({batch},), got {y.dtype} of shape {tuple(y.shape)}.")
        if bool(((y < 0) | (y > k)).any()):
            bad = int(y[(y < 0) | (y > k)][0])
            raise DifflabError(f"class label {bad} is out of range: this model knows classes 0..{k - 1} "
                               f"(and {k}, the null label).")
        return y.long()
