"""Small per-dataset image classifiers ("judges") shipped with difflab.

A judge answers "is this sample the class we asked for?" for class-conditional models and gives
the features that Fréchet-style distances compare. One judge per dataset: ``digits`` (8x8),
``mnist`` and ``fashion-mnist`` (28x28). Each takes images in data coordinates, float ``(N, 1, H,
W)`` in [0, 1], the way ``difflab.data.load_dataset`` gives them and difflab's samplers return them.

    from difflab.metrics.classifiers import judge, load_judge
    pred, conf = judge(x, "mnist")             # class and softmax probability, per image
    net = load_judge("mnist")                  # the nn.Module, in eval mode
    f = net.features(x)                        # (N, 128) penultimate features

The weights live in ``difflab/metrics/weights/<dataset>.safetensors`` beside ``<dataset>.json``
(architecture, test accuracy, how they were trained, SHA-256 of the weights), written by
``benchmarks/train_judges.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from difflab.errors import DifflabError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
JUDGE_DATASETS = ("digits", "mnist", "fashion-mnist")

__all__ = [
    "JUDGE_DATASETS",
    "JudgeNet",
    "judge",
    "load_classifier",
    "load_judge",
]


class JudgeNet(nn.Module):
    """A small CNN: 3x3 convolutions (BatchNorm, ReLU) with 2x2 max-pooling after the convolutions
    listed in ``pool_after``, global average pooling, a ``feature_dim`` feature layer (ReLU), and a
    linear layer to ``num_classes`` logits. Inputs are images in [0, 1]; the network centres them
    itself (x - 0.5) / 0.5.

    ``image_size`` and ``channels`` only fix the input shape the judge accepts (the network itself
    pools globally).
    """

    def __init__(
        self,
        image_size: int,
        channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        pool_after: tuple[int, ...] | list[int] = (0, 1),
        feature_dim: int = 128,
    ):
        super().__init__()
        self.config = {
            "image_size": int(image_size),
            "channels": int(channels),
            "num_classes": int(num_classes),
            "widths": [int(w) for w in widths],
            "pool_after": [int(i) for i in pool_after],
            "feature_dim": int(feature_dim),
        }
        layers: list[nn.Module] = []
        c_in = channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.body = nn.Sequential(*layers)
        self.feature = nn.Linear(c_in, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c["channels"], c["image_size"], c["image_size"])

    def check_input(self, x: torch.Tensor, what: str = "images") -> None:
        """Raise DifflabError unless ``x`` is a float tensor ``(N, C, H, W)`` of this judge's size."""
        expected = "(N, {}, {}, {})".format(*self.input_shape)
        if not isinstance(x, torch.Tensor):
            raise DifflabError(f"{what} must be a torch.Tensor of shape {expected}, got {type(x).__name__}.")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] == 0:
            raise DifflabError(f"{what} have shape {tuple(x.shape)}, expected a non-empty batch {expected} in [0, 1].")
        if not x.is_floating_point():
            raise DifflabError(f"{what} have dtype {x.dtype}, expected a floating-point tensor with values in [0, 1].")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, feature_dim)`` (after the ReLU) of images ``x`` in [0, 1]."""
        self.check_input(x)
        return self._features(x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body((x.to(self.feature.weight.dtype) - 0.5) / 0.5)
        return torch.relu(self.feature(h.mean(dim=(2, 3))))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` of images ``x`` in [0, 1]."""
        self.check_input(x)
        return self.head(self._features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_classifier(weights: str | Path) -> JudgeNet:
    """Load a JudgeNet from ``weights`` (a ``.safetensors`` file with a ``.json`` of the same stem
    beside it), the checksum verified, in eval mode on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(weights)
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        missing = weights if not weights.is_file() else meta_path
        raise DifflabError(f"classifier {str(weights)!r} is incomplete: {str(missing)!r} does not exist.")
    try:
        meta = json.loads(meta_path.read_text())
        config = meta["config"]
        expected_sha = meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DifflabError(f"classifier metadata {str(meta_path)!r} is corrupt (expected JSON with 'config' and 'sha256').") from None
    if _sha256(weights) != expected_sha:
        raise DifflabError(f"classifier weights {str(weights)!r} are truncated or corrupt (SHA-256 does not match {meta_path.name}).")
    try:
        tensors = load_file(str(weights))
        model = JudgeNet(**config)
        model.load_state_dict(tensors, strict=True)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise DifflabError(f"classifier weights {str(weights)!r} do not fit their config in {meta_path.name} ({e}).") from None
    model.meta = meta  # type: ignore[attr-defined]
    return model.eval().requires_grad_(False)


def _judge_path(dataset: str) -> Path:
    if dataset not in JUDGE_DATASETS:
        raise DifflabError(f"no judge classifier for dataset {dataset!r}; difflab ships judges for {', '.join(JUDGE_DATASETS)}.")
    path = WEIGHTS_DIR / f"{dataset}.safetensors"
    if not path.is_file():
        raise DifflabError(f"the judge for dataset {dataset!r} is not installed ({str(path)!r} is missing); reinstall difflab.")
    return path


def load_judge(dataset: str) -> JudgeNet:
    """The shipped judge of ``dataset`` ("digits", "mnist" or "fashion-mnist"), in eval mode on the
    CPU, gradients off. Its json (accuracy, training details) is in ``.meta``."""
    return load_classifier(_judge_path(dataset))


_CACHE: dict[tuple[str, str], JudgeNet] = {}


def _cached(dataset: str, device: torch.device) -> JudgeNet:
    key = (dataset, str(device))
    if key not in _CACHE:
        _CACHE[key] = load_judge(dataset).to(device)
    return _CACHE[key]


@torch.no_grad()
def judge(images: torch.Tensor, dataset: str, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify ``images`` (float ``(N, 1, H, W)`` in data coordinates, [0, 1]) with the judge of
    ``dataset``; returns ``(pred_class, confidence)``: int64 ``(N,)`` argmax of the logits and
    float32 ``(N,)`` its softmax probability, on the images' device.

    Values are clamped to [0, 1] first (a sample that overshoots the data range is judged as the
    image it displays as). Non-finite values are an error. Runs in batches of ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise DifflabError(f"option batch_size={batch_size!r} must be a positive integer")
    device = images.device if isinstance(images, torch.Tensor) else torch.device("cpu")
    model = _cached(dataset, device)
    model.check_input(images)
    if not torch.isfinite(images).all():
        raise DifflabError("images contain NaN or infinite values; expected finite values in [0, 1].")
    preds, confs = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].clamp(0.0, 1.0)
        p = torch.softmax(model.head(model._features(x)).float(), dim=1)
        conf, pred = p.max(dim=1)
        preds.append(pred)
        confs.append(conf)
    return torch.cat(preds), torch.cat(confs)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _describe(model: JudgeNet) -> str:
    c = model.config
    return f"JudgeNet({c['image_size']}x{c['image_size']}, widths={c['widths']}, pool_after={c['pool_after']}, " \
           f"feature_dim={c['feature_dim']}, {_num_params(model):,} parameters, {math.ceil(_num_params(model) * 4 / 1024)} KiB fp32)"
