"""The ADM options of the U-Net (Dhariwal & Nichol 2021, Sec. 3), each checked against a float64
recomputation written here from the paper's description."""

import math

import pytest
import torch
import torch.nn.functional as F

from difflab.errors import DifflabError
from difflab.models import build_model
from difflab.models.unet import AttentionBlock, ResBlock

@pytest.fixture(autouse=True, scope="module")
def _float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return module.eval()


def _reference_resblock(block, x, emb, scale_shift, resample, rescale):
    gn = lambda m, v: F.group_norm(v, m.num_groups, m.weight, m.bias, m.eps)  # noqa: E731
    h = F.silu(gn(block.norm1, x))
    if resample == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    elif resample == "up":
        h, x = h.repeat_interleave(2, 2).repeat_interleave(2, 3), x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)
    e = emb @ block.emb_proj.weight.T + block.emb_proj.bias
    if scale_shift:
        c = h.shape[1]
        h = gn(block.norm2, h) * (1 + e[:, :c, None, None]) + e[:, c:, None, None]
    else:
        h = gn(block.norm2, h + e[:, :, None, None])
    h = F.conv2d(F.silu(h), block.conv2.weight, block.conv2.bias, padding=1)
    skip = x if block.skip is None else F.conv2d(x, block.skip.weight, block.skip.bias)
    return (skip + h) / (math.sqrt(2) if rescale else 1.0)


@pytest.mark.parametrize("scale_shift", [False, True])
@pytest.mark.parametrize("resample", [None, "down", "up"])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("cin,cout", [(8, 8), (8, 16)])
def test_resblock_matches_the_papers_description(scale_shift, resample, rescale, cin, cout):
    block = _randomise(ResBlock(cin, cout, 12, 0.0, 4, scale_shift=scale_shift, resample=resample, rescale=rescale))
    g = torch.Generator().manual_seed(1)
    x, emb = torch.randn(3, cin, 8, 8, generator=g), torch.randn(3, 12, generator=g)
    want = _reference_resblock(block, x, emb, scale_shift, resample, rescale)
    got = block(x, emb)
    side = {None: 8, "down": 4, "up": 16}[resample]
    assert got.shape == (3, cout, side, side)
    assert torch.allclose(got, want, atol=1e-12)


def test_adagn_projects_twice_the_channels_and_bad_resample_is_refused():
    assert ResBlock(8, 16, 12, 0.0, 4, scale_shift=True).emb_proj.out_features == 32
    assert ResBlock(8, 16, 12, 0.0, 4).emb_proj.out_features == 16
    with pytest.raises(DifflabError, match="resample"):
        ResBlock(8, 8, 12, 0.0, 4, resample="sideways")


@pytest.mark.parametrize("heads,head_channels,expect", [(4, None, 4), (1, 8, 4), (1, 16, 2), (2, 32, 1)])
def test_attention_heads_fixed_or_by_width_against_manual_multihead(heads, head_channels, expect):
    block = _randomise(AttentionBlock(32, heads, 8, head_channels=head_channels))
    assert block.num_heads == expect
    x = torch.randn(2, 32, 4, 4, generator=torch.Generator().manual_seed(2))
    seq = F.group_norm(x, 8, block.norm.weight, block.norm.bias, block.norm.eps).flatten(2).transpose(1, 2)
    q, k, v = (seq @ block.qkv.weight.T + block.qkv.bias).chunk(3, dim=-1)
    d = 32 // expect
    outs = []
    for i in range(expect):
        sl = slice(i * d, (i + 1) * d)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
        outs.append(w @ v[..., sl])
    a = torch.cat(outs, -1) @ block.proj_out.weight.T + block.proj_out.bias
    want = x + a.transpose(1, 2).reshape(x.shape)
    assert torch.allclose(block(x), want, atol=1e-12)


ADM = {"type": "unet", "in_channels": 1, "image_size": 16, "base_channels": 16, "channel_mult": [1, 2, 2],
       "num_res_blocks": 1, "attention_resolutions": [8, 4], "groups": 8, "num_head_channels": 8,
       "resblock_updown": True, "scale_shift_norm": True, "rescale_residuals": True, "num_classes": 3}


def test_adm_unet_runs_starts_at_zero_and_trains():
    net = build_model(ADM)
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([3.0, 700.0]), torch.tensor([0, 2])
    assert torch.equal(net(x, t, y), torch.zeros(2, 1, 16, 16))  # zero-initialised output layers
    assert sum(isinstance(m, ResBlock) and m.resample == "down" for m in net.modules()) == 2
    assert sum(isinstance(m, ResBlock) and m.resample == "up" for m in net.modules()) == 2
    assert all(m.num_heads == m.channels // 8 for m in net.modules() if isinstance(m, AttentionBlock))
    _randomise(net)
    out = net(x, t, y)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad and p is not net.class_embed.weight) \
        and net.class_embed.weight.grad is not None


def test_defaults_keep_the_ddpm_network():
    plain = build_model({**ADM, "num_head_channels": None, "resblock_updown": False, "scale_shift_norm": False,
                         "rescale_residuals": False})
    keys = set(plain.state_dict())
    assert not any(".res." in k and "resample" in k for k in keys)
    assert any(k.endswith("up.conv.weight") for k in keys)  # nearest + conv upsampler, as in DDPM


@pytest.mark.parametrize("key,value,message", [("num_head_channels", 5, "must divide"), ("num_head_channels", 0, "positive"),
                                               ("resblock_updown", "yes", "true or false"),
                                               ("scale_shift_norm", 1, "true or false")])
def test_bad_adm_options(key, value, message):
    with pytest.raises(DifflabError, match=message):
        build_model({**ADM, key: value})
