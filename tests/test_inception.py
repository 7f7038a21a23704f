"""The FID InceptionV3 (random weights only: no weights ship and nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch

from difflab.errors import DifflabError
from difflab.metrics.inception import InceptionFeatures, InceptionV3, load_inception

# torchvision documents num_params = 27,161,264 for inception_v3 (Inception_V3_Weights.IMAGENET1K_V1:
# aux logits on, 1000 classes; https://pytorch.org/vision/stable/models/generated/torchvision.models.inception_v3.html).
# The FID network drops the aux head -- conv0 768->128 1x1 (98,304 + bn 256), conv1 128->768 5x5
# (2,457,600 + bn 1,536), fc 768->1000 (769,000): 3,326,696 -- and has a 1008-way fc instead of a
# 1000-way one (+8*2048 + 8 = 16,392): 27,161,264 - 3,326,696 + 16,392 = 23,850,960.
FID_INCEPTION_PARAMS = 23_850_960


def _conv_bn(cin, cout, kh, kw=None):
    return cin * cout * kh * (kw or kh) + 2 * cout


def test_parameter_count_matches_fid_inception():
    model = InceptionV3()
    assert sum(p.numel() for p in model.parameters()) == FID_INCEPTION_PARAMS
    # Independent per-layer arithmetic for the stem and one block of each kind.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.Conv2d_1a_3x3) == _conv_bn(3, 32, 3)
    assert count(model.Mixed_5b) == (_conv_bn(192, 64, 1) + _conv_bn(192, 48, 1) + _conv_bn(48, 64, 5)
                                     + _conv_bn(192, 64, 1) + _conv_bn(64, 96, 3) + _conv_bn(96, 96, 3)
                                     + _conv_bn(192, 32, 1))
    assert count(model.Mixed_6b) == (_conv_bn(768, 192, 1) + _conv_bn(768, 128, 1) + _conv_bn(128, 128, 1, 7)
                                     + _conv_bn(128, 192, 7, 1) + _conv_bn(768, 128, 1)
                                     + 3 * _conv_bn(128, 128, 7, 1) + _conv_bn(128, 192, 1, 7)
                                     + _conv_bn(768, 192, 1))
    assert count(model.Mixed_7c) == (_conv_bn(2048, 320, 1) + _conv_bn(2048, 384, 1) + 2 * _conv_bn(384, 384, 1, 3)
                                     + _conv_bn(2048, 448, 1) + _conv_bn(448, 384, 3)
                                     + 2 * _conv_bn(384, 384, 1, 3) + _conv_bn(2048, 192, 1))
    assert model.fc.weight.shape == (1008, 2048)
    assert model.Conv2d_1a_3x3.bn.eps == 0.001
    keys = model.state_dict().keys()
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_mean", "Mixed_5b.branch1x1.conv.weight",
                "Mixed_7c.branch_pool.bn.running_var", "fc.weight", "fc.bias"):
        assert key in keys
    assert not any(k.startswith("AuxLogits") for k in keys)


def _random_weights(tmp_path, name="inception.pth"):
    torch.manual_seed(0)
    model = InceptionV3()
    for m in model.modules():  # non-trivial running statistics, so a round trip is a real check
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path, state


def test_extractor_shapes_and_grey_images(tmp_path):
    path, _ = _random_weights(tmp_path)
    extractor = InceptionFeatures(path, batch_size=2)
    assert extractor.name == "inception-v3"
    features, probs = extractor(torch.rand(2, 1, 28, 28))  # the one real 299x299 forward (batch of 2)
    assert features.shape == (2, 2048) and probs.shape == (2, 1008)
    assert features.dtype == torch.float64 and probs.dtype == torch.float64
    assert torch.isfinite(features).all() and (features >= 0).all()  # after ReLU and average pooling
    torch.testing.assert_close(probs.sum(1), torch.ones(2, dtype=torch.float64))

    # Batching and the grey -> RGB repeat, checked on a cheap stand-in for the network.
    seen = []

    def fake_model(x):
        seen.append(x.clone())
        return x.mean((2, 3)).repeat(1, 683)[:, :2048], torch.zeros(x.shape[0], 1008)

    extractor.model = fake_model
    grey = torch.rand(3, 1, 8, 8)
    features, probs = extractor(grey, batch_size=2)
    assert [x.shape for x in seen] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    torch.testing.assert_close(torch.cat(seen), grey.repeat(1, 3, 1, 1))
    assert features.shape == (3, 2048) and torch.allclose(probs, torch.full((3, 1008), 1 / 1008, dtype=torch.float64))
    with pytest.raises(DifflabError, match="C = 1 or 3"):
        extractor(torch.rand(2, 2, 8, 8))


@pytest.mark.parametrize("name", ["inception.pth", "inception.safetensors"])
def test_state_dict_round_trip(tmp_path, name):
    path, state = _random_weights(tmp_path, name)
    loaded = load_inception(path)
    assert not loaded.training
    for key, value in state.items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_corrupted_key_sets_are_refused(tmp_path):
    path, state = _random_weights(tmp_path)
    missing = dict(state)
    del missing["Mixed_6b.branch7x7_2.conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(DifflabError, match=r"missing\.pth.*missing the key 'Mixed_6b\.branch7x7_2\.conv\.weight'"):
        load_inception(tmp_path / "missing.pth")

    unknown = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
    torch.save(unknown, tmp_path / "unknown.pth")
    with pytest.raises(DifflabError, match=r"unknown\.pth.*unknown key 'AuxLogits\.fc\.weight'"):
        load_inception(tmp_path / "unknown.pth")

    wrong = dict(state, **{"fc.weight": torch.zeros(1000, 2048)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(DifflabError, match=r"wrong\.pth.*'fc\.weight' of shape \(1000, 2048\)"):
        load_inception(tmp_path / "wrong.pth")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DifflabError, match="garbage.pth"):
        load_inception(tmp_path / "garbage.pth")


def test_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(DifflabError, match="No InceptionV3 weights ship with difflab.*--inception-weights PATH"):
        InceptionFeatures()
    with pytest.raises(DifflabError, match="does not exist"):
        load_inception(tmp_path / "nope.pth")
