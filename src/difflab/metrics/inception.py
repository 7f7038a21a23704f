"""InceptionV3 as used for FID and the Inception Score.

The architecture is that of the TensorFlow Inception graph of 2015-12-05 as ported to PyTorch
for FID: the usual InceptionV3 stem and Mixed_5b ... Mixed_7c blocks, with the FID variants of
the blocks -- the average pools of the A, C and E blocks exclude the padding from the mean
(``count_include_pad=False``) and the pool branch of the last E block (Mixed_7c) is a max pool.
Batch norm uses eps 0.001, there are no auxiliary logits, and the head is a 1008-way linear
layer on the 2048-d "pool3" features.

No weights ship with difflab: pass the path of a plain state dict (the standard
``pt_inception-2015-12-05-*.pth`` file, or a ``.safetensors`` file with the same keys) to
:func:`load_inception` or :class:`InceptionFeatures`. Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from difflab.errors import DifflabError

__all__ = ["InceptionV3", "InceptionFeatures", "load_inception", "FEATURE_DIM", "NUM_LOGITS"]

FEATURE_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # FID variant: padded positions do not count towards the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool branches -> 224 + pool_features channels."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17: 384 + 96 + in_channels channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions -> 768 channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8: 320 + 192 + in_channels channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3 / 3x1 branches -> 2048 channels.

    ``max_pool=False`` is the FID Mixed_7b (average pool without padding in the mean);
    ``max_pool=True`` is the FID Mixed_7c (max pool in the pool branch).
    """

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3(nn.Module):
    """The FID InceptionV3; ``forward(x in [0, 1]) -> (pool3 features (N, 2048), logits (N, 1008))``."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0  # [0, 1] -> [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147x147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73x73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 71x71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35x35
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        ):
            x = block(x)  # ends at 8x8x2048
        features = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # pool3
        return features, self.fc(features)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects other than tensors, ...
        raise DifflabError(
            f"InceptionV3 weights file {path} could not be read as a plain state dict of tensors ({exc})."
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DifflabError(f"InceptionV3 weights file {path} is not a plain state dict mapping names to tensors.")
    return state


def load_inception(path: str | Path) -> InceptionV3:
    """Build the FID InceptionV3 and load its weights from ``path`` (a ``.pth`` state dict or ``.safetensors``).

    Loading is strict: a missing, unknown or wrongly shaped key raises a DifflabError naming the
    first offending key and the file. Only ``num_batches_tracked`` buffers may be absent.
    The model is returned in eval mode on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"InceptionV3 weights file {path} does not exist.")
    state = dict(_read_state_dict(path))
    model = InceptionV3()
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                state[key] = value.clone()
                continue
            raise DifflabError(f"InceptionV3 weights file {path} is missing the key {key!r}.")
        if tuple(state[key].shape) != tuple(value.shape):
            raise DifflabError(
                f"InceptionV3 weights file {path} has key {key!r} of shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}."
            )
    unknown = [key for key in state if key not in expected]
    if unknown:
        raise DifflabError(f"InceptionV3 weights file {path} has the unknown key {unknown[0]!r}.")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


class InceptionFeatures:
    """Feature extractor: ``images (N, C, H, W) in [0, 1], C = 1 or 3 -> (features (N, 2048), probs (N, 1008))``.

    Both outputs are float64 CPU tensors (like ``evaluate.JudgeFeatures``); ``probs`` is the softmax of the 1008 logits (for the
    Inception Score). Grey images are repeated to 3 channels. Runs batched, without gradients.
    """

    name = "inception-v3"

    def __init__(self, weights_path: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 50):
        if weights_path is None:
            raise DifflabError(
                "No InceptionV3 weights ship with difflab, so FID needs --inception-weights PATH "
                "(a state dict such as pt_inception-2015-12-05-*.pth or a .safetensors file)."
            )
        if batch_size < 1:
            raise DifflabError(f"batch_size must be a positive integer, got {batch_size}.")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = load_inception(weights_path).to(self.device)

    def __call__(self, images, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(images) if isinstance(images, np.ndarray) else images
        if not isinstance(x, torch.Tensor):
            raise DifflabError(f"images must be a torch.Tensor or numpy array (N, C, H, W), got {type(images).__name__}.")
        if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] not in (1, 3):
            raise DifflabError(
                f"images have shape {tuple(x.shape)}, expected a non-empty batch (N, C, H, W) with C = 1 or 3."
            )
        if not x.is_floating_point():
            raise DifflabError(f"images have dtype {x.dtype}, expected floating-point values in [0, 1].")
        step = int(batch_size or self.batch_size)
        feats, probs = [], []
        with torch.no_grad():
            for start in range(0, x.shape[0], step):
                batch = x[start:start + step].to(self.device, torch.float32).clamp(0, 1)
                if batch.shape[1] == 1:
                    batch = batch.repeat(1, 3, 1, 1)
                f, logits = self.model(batch)
                feats.append(f.double().cpu())
                probs.append(torch.softmax(logits.double(), dim=1).cpu())
        return torch.cat(feats), torch.cat(probs)
