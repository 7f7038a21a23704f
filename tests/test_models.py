"""Tests for difflab.models: embeddings, MLP, the DDPM U-Net and build_model.

References are independent of the code under test: a float64 numpy recomputation of the
sinusoidal embedding, a hand-written float64 multi-head attention, closed-form parameter
counts, and the published size of the DDPM CIFAR-10 network (Ho et al. 2020: 35.7M).
"""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch

from difflab.errors import DifflabError
from difflab.models import MLP, MODEL_DEFAULTS, UNet, build_model, complete_config, timestep_embedding
from difflab.models.embedding import expand_timesteps
from difflab.models.unet import AttentionBlock

torch.set_num_threads(2)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def perturb_zero_init(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Give every all-zero parameter (the zero-initialised layers) small random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def small_unet(**kw) -> UNet:
    cfg = dict(in_channels=1, image_size=8, base_channels=16, channel_mult=(1, 2),
               num_res_blocks=1, attention_resolutions=(4,), dropout=0.0, groups=8)
    cfg.update(kw)
    return UNet(**cfg)


# ---------------------------------------------------------------- timestep embedding


def np_embedding(t: np.ndarray, dim: int, max_period: float = 10000.0) -> np.ndarray:
    half = dim // 2
    out = np.zeros((len(t), dim), dtype=np.float64)
    for i in range(half):
        f = math.exp(-math.log(max_period) * i / half)
        out[:, i] = np.cos(t * f)
        out[:, half + i] = np.sin(t * f)
    return out


T_VALUES = np.array([0.0, 1.0, 2.5, 37.0, 500.25, 999.7, 1000.0])


@pytest.mark.parametrize("dim", [1, 2, 7, 64, 129])
def test_embedding_matches_numpy_float64(dim):
    ref = np_embedding(T_VALUES, dim)
    got64 = timestep_embedding(torch.tensor(T_VALUES, dtype=torch.float64), dim)
    assert got64.dtype == torch.float64 and got64.shape == (len(T_VALUES), dim)
    np.testing.assert_allclose(got64.numpy(), ref, atol=1e-12, rtol=0)
    got32 = timestep_embedding(torch.tensor(T_VALUES, dtype=torch.float32), dim)
    assert got32.dtype == torch.float32
    # float32 arguments t*f up to 1000 rad carry ~1e-4 absolute error
    np.testing.assert_allclose(got32.numpy(), ref, atol=3e-4, rtol=0)


def test_embedding_order_and_odd_padding():
    e = timestep_embedding(torch.zeros(1), 9)[0]
    assert torch.equal(e, torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0, 0]))  # cos first, then sin, then pad
    e = timestep_embedding(torch.tensor([3.0, 700.0]), 11)
    assert torch.all(e[:, -1] == 0)
    np.testing.assert_allclose(e[:, :10].numpy(), np_embedding(np.array([3.0, 700.0]), 10), atol=3e-4)
    # other max_period
    e = timestep_embedding(torch.tensor([0.3], dtype=torch.float64), 8, max_period=100.0)
    np.testing.assert_allclose(e.numpy(), np_embedding(np.array([0.3]), 8, 100.0), atol=1e-12)
    with pytest.raises(DifflabError, match="dim"):
        timestep_embedding(torch.zeros(2), 0)


def test_expand_timesteps():
    full = torch.full((4,), 7.0)
    for t in (7, 7.0, torch.tensor(7.0), torch.tensor([7.0]), torch.tensor(7), full):
        got = expand_timesteps(t, 4)
        assert got.shape == (4,) and got.is_floating_point() and torch.equal(got, full)
    with pytest.raises(DifflabError, match="shape"):
        expand_timesteps(torch.zeros(3), 4)
    with pytest.raises(DifflabError, match="shape"):
        expand_timesteps(torch.zeros(4, 1), 4)


# ---------------------------------------------------------------- MLP


def test_mlp_shape_params_and_time_conditioning():
    torch.manual_seed(0)
    dim, hidden, depth, td = 3, 32, 2, 16
    m = MLP(dim=dim, hidden=hidden, depth=depth, time_dim=td)
    lin = lambda a, b: a * b + b  # noqa: E731
    expected = lin(td, hidden) + lin(hidden, hidden) + lin(dim, hidden) + 2 * depth * lin(hidden, hidden) + lin(hidden, dim)
    assert n_params(m) == expected
    x = torch.randn(5, dim)
    y = m(x, torch.arange(5.0) * 100)
    assert y.shape == (5, dim)
    # scalar t == broadcast t
    assert torch.allclose(m(x, 250.0), m(x, torch.full((5,), 250.0)))
    assert torch.allclose(m(x, torch.tensor(250)), m(x, torch.full((5,), 250.0)))
    # t matters
    assert (m(x, 10.0) - m(x, 900.0)).abs().max() > 1e-3
    # default config
    assert MLP()(torch.randn(4, 2), 1).shape == (4, 2)
    with pytest.raises(DifflabError, match="shape"):
        m(torch.randn(5, dim + 1), 1.0)
    with pytest.raises(DifflabError, match="'hidden'"):
        MLP(hidden=0)


# ---------------------------------------------------------------- U-Net structure


def unet_param_count(in_ch, out_ch, base, mult, nres, attn_res, size):
    """Closed-form parameter count of the DDPM U-Net from its description (independent of the module)."""
    conv = lambda ci, co, k: ci * co * k * k + co  # noqa: E731
    lin = lambda ci, co: ci * co + co  # noqa: E731
    gn = lambda c: 2 * c  # noqa: E731
    emb = 4 * base

    def res(ci, co):
        return gn(ci) + conv(ci, co, 3) + lin(emb, co) + gn(co) + conv(co, co, 3) + (conv(ci, co, 1) if ci != co else 0)

    def attn(c):
        return gn(c) + 4 * lin(c, c)  # q, k, v, proj

    total = lin(base, emb) + lin(emb, emb) + conv(in_ch, base, 3)
    ch, skips, r = base, [base], size
    for lvl, m in enumerate(mult):
        for _ in range(nres):
            total += res(ch, base * m) + (attn(base * m) if r in attn_res else 0)
            ch = base * m
            skips.append(ch)
        if lvl != len(mult) - 1:
            total += conv(ch, ch, 3)
            skips.append(ch)
            r //= 2
    total += 2 * res(ch, ch) + attn(ch)
    for lvl in reversed(range(len(mult))):
        for _ in range(nres + 1):
            total += res(ch + skips.pop(), base * mult[lvl]) + (attn(base * mult[lvl]) if r in attn_res else 0)
            ch = base * mult[lvl]
        if lvl != 0:
            total += conv(ch, ch, 3)
            r *= 2
    return total + gn(ch) + conv(ch, out_ch, 3)


def test_ddpm_cifar10_size_matches_paper():
    # Ho et al. 2020, Sec. 4 / App. B: the CIFAR-10 model (ch 128, mult 1,2,2,2, 2 res blocks,
    # attention at 16x16) has 35.7M parameters; the released checkpoint has 35,746,307.
    with torch.device("meta"):
        m = UNet(in_channels=3, image_size=32, base_channels=128, channel_mult=(1, 2, 2, 2),
                 num_res_blocks=2, attention_resolutions=(16,), dropout=0.1)
    assert n_params(m) == 35_746_307
    assert unet_param_count(3, 3, 128, (1, 2, 2, 2), 2, (16,), 32) == 35_746_307
    # 256x256 models (LSUN, CelebA-HQ): 114M parameters
    with torch.device("meta"):
        m = UNet(in_channels=3, image_size=256, base_channels=128, channel_mult=(1, 1, 2, 2, 4, 4),
                 num_res_blocks=2, attention_resolutions=(16,))
    assert round(n_params(m) / 1e6) == 114


def test_digits_config_param_count():
    m = build_model({"type": "unet", "image_size": 8, "base_channels": 64, "channel_mult": [1, 2],
                     "num_res_blocks": 2, "attention_resolutions": [4]})
    n = n_params(m)
    assert n == unet_param_count(1, 1, 64, (1, 2), 2, (4,), 8)
    print(f"digits U-Net (8x8, base 64, mult (1,2), 2 res blocks, attn at 4): {n:,} parameters")


@pytest.mark.parametrize(
    "kw, x_shape, out_ch",
    [
        (dict(image_size=8, base_channels=16, channel_mult=(1, 2), attention_resolutions=(4,), groups=8), (3, 1, 8, 8), 1),
        (dict(image_size=28, base_channels=16, channel_mult=(1, 2, 2), attention_resolutions=(14,), groups=8), (2, 1, 28, 28), 1),
        (dict(in_channels=3, image_size=16, base_channels=32, channel_mult=(1, 2), attention_resolutions=(8, 16),
              num_heads=4), (2, 3, 16, 16), 3),
        (dict(in_channels=1, out_channels=2, image_size=8, base_channels=16, channel_mult=(1, 2, 2),
              attention_resolutions=(), num_res_blocks=1, groups=4), (2, 1, 8, 8), 2),
        (dict(in_channels=3, out_channels=6, image_size=4, base_channels=8, channel_mult=(1,),
              attention_resolutions=(4,), groups=32), (2, 3, 4, 4), 6),
    ],
)
def test_unet_output_shape_and_zero_at_init(kw, x_shape, out_ch):
    m = UNet(**kw)
    assert n_params(m) == unet_param_count(
        kw.get("in_channels", 1), out_ch, kw["base_channels"], kw["channel_mult"],
        kw.get("num_res_blocks", 2), kw["attention_resolutions"], kw["image_size"])
    x = torch.randn(*x_shape)
    y = m(x, torch.rand(x_shape[0]) * 1000)
    assert y.shape == (x_shape[0], out_ch, *x_shape[2:])
    assert torch.count_nonzero(y) == 0  # zero-initialised output conv
    perturb_zero_init(m)
    y = m(x, 3.0)
    assert y.shape == (x_shape[0], out_ch, *x_shape[2:]) and y.abs().max() > 0


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = small_unet(channel_mult=(1, 2, 2), image_size=8, attention_resolutions=(8, 2), num_heads=2)
    perturb_zero_init(m)
    x = torch.randn(2, 1, 8, 8)
    (m(x, torch.tensor([5.0, 800.0])) * torch.randn(2, 1, 8, 8)).sum().backward()
    dead = [name for name, p in m.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert dead == []


def test_unet_time_conditioning_and_batch_independence():
    torch.manual_seed(1)
    m = small_unet().eval()
    perturb_zero_init(m)
    x = torch.randn(1, 1, 8, 8).repeat(3, 1, 1, 1)
    y = m(x, torch.tensor([10.0, 10.0, 600.0]))
    assert torch.allclose(y[0], y[1], atol=1e-6)
    assert (y[0] - y[2]).abs().max() > 1e-3
    # each sample depends only on itself (GroupNorm is per sample)
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([1.0, 2.5, 300.0, 1000.0])
    y = m(x, t)
    for i in range(4):
        assert torch.allclose(m(x[i : i + 1], t[i : i + 1]), y[i : i + 1], atol=1e-5)


def test_dropout_train_vs_eval():
    torch.manual_seed(2)
    m = small_unet(dropout=0.3)
    perturb_zero_init(m)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([50.0, 60.0])
    m.train()
    assert (m(x, t) - m(x, t)).abs().max() > 1e-4
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x, t), m(x, t))
    m0 = small_unet(dropout=0.0).train()
    perturb_zero_init(m0)
    assert torch.equal(m0(x, t), m0(x, t))


# ---------------------------------------------------------------- attention


def reference_attention(block: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """Float64 multi-head self-attention written out from the definition."""
    x = x.double()
    b, c, h, w = x.shape
    heads, d = block.num_heads, c // block.num_heads
    g = block.norm.num_groups
    xg = x.reshape(b, g, -1)
    mean = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    xn = ((xg - mean) / torch.sqrt(var + block.norm.eps)).reshape(b, c, h * w)
    xn = xn * block.norm.weight.double()[:, None] + block.norm.bias.double()[:, None]
    seq = xn.transpose(1, 2)  # (b, L, c)
    qkv = seq @ block.qkv.weight.double().T + block.qkv.bias.double()
    out = torch.zeros(b, h * w, c, dtype=torch.float64)
    for head in range(heads):
        q = qkv[..., head * d : (head + 1) * d]
        k = qkv[..., c + head * d : c + (head + 1) * d]
        v = qkv[..., 2 * c + head * d : 2 * c + (head + 1) * d]
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
        out[..., head * d : (head + 1) * d] = a @ v
    out = out @ block.proj_out.weight.double().T + block.proj_out.bias.double()
    return x + out.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_matches_reference_and_is_permutation_equivariant(heads):
    torch.manual_seed(3)
    blk = AttentionBlock(16, heads, groups=4)
    assert torch.count_nonzero(blk.proj_out.weight) == 0  # zero-init: identity at start
    x = torch.randn(2, 16, 5, 6)
    assert torch.equal(blk(x), x)
    perturb_zero_init(blk, std=0.3)
    with torch.no_grad():
        blk.norm.weight.uniform_(0.5, 1.5)
        blk.norm.bias.normal_(0, 0.1)
        y = blk(x)
        torch.testing.assert_close(y.double(), reference_attention(blk, x), atol=2e-5, rtol=1e-5)
        perm = torch.randperm(30)
        xp = x.reshape(2, 16, 30)[:, :, perm].reshape(2, 16, 5, 6)
        yp = blk(xp)
        torch.testing.assert_close(yp.reshape(2, 16, 30), y.reshape(2, 16, 30)[:, :, perm], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- build_model / config


def test_defaults_match_signatures_and_roundtrip_json():
    for kind, cls in (("mlp", MLP), ("unet", UNet)):
        sig = inspect.signature(cls.__init__).parameters
        names = [n for n in sig if n != "self"]
        assert list(MODEL_DEFAULTS[kind]) == names
        for n in names:
            default = sig[n].default
            assert MODEL_DEFAULTS[kind][n] == (list(default) if isinstance(default, tuple) else default)
    cfg = complete_config({"type": "unet", "image_size": 8, "channel_mult": [1, 2], "attention_resolutions": [4]})
    assert cfg["base_channels"] == 64 and cfg["type"] == "unet"
    again = json.loads(json.dumps(cfg))
    m1, m2 = build_model(cfg), build_model(again)
    assert n_params(m1) == n_params(m2)
    assert complete_config({"type": "unet", **m1.config}) == {**cfg, "out_channels": 1}  # None resolved
    assert isinstance(build_model({"type": "mlp"}), MLP)
    # completing must not alias the defaults
    cfg["channel_mult"].append(9)
    assert MODEL_DEFAULTS["unet"]["channel_mult"] == [1, 2, 2]


@pytest.mark.parametrize(
    "config, key",
    [
        ({"type": "unet", "widht": 3}, "widht"),
        ({"type": "mlp", "channel_mult": [1]}, "channel_mult"),
        ({"type": "transformer"}, "type"),
        ({"image_size": 8}, "type"),
        ({"type": "unet", "image_size": 30}, "image_size"),  # 30 not divisible by 4
        ({"type": "unet", "image_size": 8, "channel_mult": [1, 2], "attention_resolutions": [14]}, "attention_resolutions"),
        ({"type": "unet", "attention_resolutions": [5]}, "attention_resolutions"),
        ({"type": "unet", "channel_mult": []}, "channel_mult"),
        ({"type": "unet", "channel_mult": [1, 0]}, "channel_mult"),
        ({"type": "unet", "dropout": 1.0}, "dropout"),
        ({"type": "unet", "dropout": -0.1}, "dropout"),
        ({"type": "unet", "base_channels": 16, "channel_mult": [1, 2]}, "groups"),  # concat width 48 % 32
        ({"type": "unet", "base_channels": 48, "groups": 32}, "groups"),
        ({"type": "unet", "num_heads": 3}, "num_heads"),
        ({"type": "unet", "num_res_blocks": 0}, "num_res_blocks"),
        ({"type": "unet", "in_channels": True}, "in_channels"),
        ({"type": "mlp", "depth": 0}, "depth"),
    ],
)
def test_build_model_errors_name_the_key(config, key):
    with pytest.raises(DifflabError) as info:
        build_model(config)
    msg = str(info.value)
    assert f"'{key}'" in msg
    assert msg.count(".") >= 1 and "\n" not in msg


def test_unet_input_errors():
    m = small_unet()
    with pytest.raises(DifflabError, match="shape"):
        m(torch.randn(2, 3, 8, 8), 1.0)
    with pytest.raises(DifflabError, match="multiples"):
        m(torch.randn(2, 1, 7, 7), 1.0)
    with pytest.raises(DifflabError, match="shape"):
        m(torch.randn(2, 1, 8, 8), torch.ones(3))
