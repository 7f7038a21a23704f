"""Sample a difflab model without PyTorch: onnxruntime, numpy and Pillow only.

Export the model once (where difflab is installed), then sample anywhere:

    difflab export mnist --format onnx --out mnist-onnx
    python examples/onnx_sample.py mnist-onnx --num 16 --steps 20 --seed 0 --label 3 --out threes.png

The sampler is deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12 with η = 0) on
"trailing" timesteps, difflab's default: x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'}) ε̂. The graph and ``onnx.json`` are
described in difflab's ``difflab.formats.onnx``. Images are written as a PNG grid, points (2-D toys) as ``.npy``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def trailing(T: int, steps: int) -> np.ndarray:
    """The visited timesteps T, T − T/steps, ... rounded (difflab's ``trailing`` discretization)."""
    return np.round(np.arange(T, 0, -T / steps)).astype(np.int64)


def eps_and_x0(pred: np.ndarray, x: np.ndarray, a: float, s: float, parameterization: str):
    """ε̂ and x̂_0 from a prediction of ε, x_0 or v = α ε − σ x_0 (Salimans & Ho 2022) at x_t = α x_0 + σ ε."""
    if parameterization == "eps":
        return pred, (x - s * pred) / a
    if parameterization == "x0":
        return (x - a * pred) / s, pred
    return s * x + a * pred, a * x - s * pred


def ddim(session, meta: dict, x: np.ndarray, steps: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Deterministic DDIM from x_T = ``x`` (model coordinates, float64) in ``steps`` network evaluations."""
    alpha_bar = np.asarray(meta["alpha_bar"], dtype=np.float64)
    times = trailing(meta["T"], steps)
    for i, t in enumerate(times):
        feed = {"x": x.astype(np.float32), "t": np.full(len(x), t, dtype=np.float32)}
        if "y" in meta["inputs"]:
            feed["y"] = labels.astype(np.int64)
        pred = session.run(None, feed)[0].astype(np.float64)
        a, s = math.sqrt(alpha_bar[t]), math.sqrt(1 - alpha_bar[t])
        eps, x0 = eps_and_x0(pred, x, a, s, meta["parameterization"])
        if meta["clip"]:  # clip x̂_0 to [−1, 1] and recompute ε̂ from it, as difflab's samplers do
            x0 = np.clip(x0, -1, 1)
            eps = (x - a * x0) / s
        t_next = times[i + 1] if i + 1 < len(times) else 0
        x = math.sqrt(alpha_bar[t_next]) * x0 + math.sqrt(1 - alpha_bar[t_next]) * eps
    return x


def to_data(x: np.ndarray, normalization: dict) -> np.ndarray:
    """Model coordinates back to the data's: pixels in [0, 1], or a toy's own coordinates."""
    shift = np.asarray(normalization["shift"], dtype=np.float64)
    if normalization["kind"] == "image":
        return np.clip(x * normalization["scale"] + shift.reshape(-1, 1, 1), 0, 1)
    return x * normalization["scale"] + shift


def save_grid(images: np.ndarray, path: str) -> None:
    from PIL import Image

    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((c, rows * (h + 2), cols * (w + 2)))
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[:, r * (h + 2) + 1:r * (h + 2) + 1 + h, q * (w + 2) + 1:q * (w + 2) + 1 + w] = img
    pixels = np.round(grid * 255).astype(np.uint8)
    Image.fromarray(pixels[0] if c == 1 else pixels.transpose(1, 2, 0)).save(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="the directory written by `difflab export RUN --format onnx --out DIR`")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, default=None, help="class of every sample (class-conditional models)")
    p.add_argument("--out", default="samples.png", help=".png grid for images, .npy for points")
    a = p.parse_args(argv)
    import onnxruntime

    model = Path(a.model)
    meta = json.loads((model / "onnx.json").read_text())
    if not 1 <= a.steps <= meta["T"]:
        p.error(f"--steps must be in 1..{meta['T']}")
    labels = None
    if "y" in meta["inputs"]:
        k = meta["num_classes"]
        label = k if a.label is None else a.label  # label k: the null label (unconditional)
        if not 0 <= label <= k:
            p.error(f"--label must be in 0..{k - 1} (or omitted for unconditional samples)")
        labels = np.full(a.num, label)
    session = onnxruntime.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    x_T = np.random.default_rng(a.seed).standard_normal((a.num, *meta["shape"]))
    samples = to_data(ddim(session, meta, x_T, a.steps, labels), meta["normalization"])
    if a.out.endswith(".npy"):
        np.save(a.out, samples)
    else:
        save_grid(samples, a.out)
    print(f"wrote {a.num} samples to {a.out}")


if __name__ == "__main__":
    main()
