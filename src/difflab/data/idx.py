"""The IDX file format of MNIST and Fashion-MNIST, read with numpy alone.

An IDX file is: two zero bytes; one byte naming the element type (0x08 unsigned byte, 0x09
signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64); one byte giving the number
of dimensions d; d big-endian unsigned 32-bit sizes; then the elements, big-endian, in C
order. A file whose name ends in ``.gz`` is gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from difflab.errors import DifflabError

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# (images, labels) file stems of each split, in the order they are looked for.
_SPLIT_STEMS = {
    "train": (("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
              ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")),
    "test": (("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
             ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DifflabError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise DifflabError(f"IDX file {path} is a directory, expected a file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DifflabError(f"IDX file {path} is not a complete gzip file ({e})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally ``.gz``) into a native-endian numpy array.

    Raises DifflabError naming the file for a missing file, a wrong magic number, an unknown
    type code, or a data section shorter or longer than the header's dimensions say.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DifflabError(f"IDX file {path} is only {len(raw)} bytes long, too short for the 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise DifflabError(
            f"IDX file {path} has magic number 0x{raw[:4].hex()}, expected two zero bytes, a type code and a dimension count"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DifflabError(f"IDX file {path} has element type code 0x{code:02X}, expected one of {known}")
    if ndim == 0:
        raise DifflabError(f"IDX file {path} declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DifflabError(f"IDX file {path} is truncated inside its header: {len(raw)} bytes, expected at least {header}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DifflabError(
            f"IDX file {path} is truncated: its header declares shape {dims} ({expected} data bytes) but it holds {got}"
        )
    if got > expected:
        raise DifflabError(
            f"IDX file {path} has {got - expected} bytes after the {expected} data bytes its header shape {dims} declares"
        )
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                return root / name
    raise DifflabError(f"IDX directory {root} has no file {stems[0]} (or {stems[0]}.gz)")


def load_idx_split(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 of one split of an IDX directory.

    ``split`` "train" reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``, "test"
    reads ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``; each may end in ``.gz``
    (the dotted spelling ``train-images.idx3-ubyte`` is accepted too).
    """
    root = Path(root)
    if not root.is_dir():
        raise DifflabError(f"IDX directory {root} does not exist or is not a directory")
    image_stems, label_stems = _SPLIT_STEMS[split]
    image_path, label_path = _find(root, image_stems), _find(root, label_stems)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DifflabError(
            f"IDX file {image_path} holds a {images.dtype} array of shape {images.shape}, expected uint8 images (N, H, W)"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DifflabError(
            f"IDX file {label_path} holds a {labels.dtype} array of shape {labels.shape}, expected integer labels (N,)"
        )
    if len(images) != len(labels):
        raise DifflabError(
            f"IDX file {image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels; expected equal counts"
        )
    return images, labels.astype(np.int64)
