"""A run's network as an ONNX graph, to sample without PyTorch (onnxruntime and numpy only).

``export(RUN, OUT)`` writes ``OUT/model.onnx`` and ``OUT/onnx.json``. The graph is the raw network: inputs ``x``
(B, C, H, W) float32, ``t`` (B,) float32 — difflab's timestep 1..T, ᾱ_t = ``alpha_bar[t]`` — and, for a
class-conditional model, ``y`` (B,) int64 (label ``num_classes`` is the null label); output ``out``, the prediction
named by ``parameterization`` (ε, x_0 or v). ``onnx.json`` holds what a sampler needs besides: the ᾱ table (float64,
index 0 the data), the parameterization, whether x̂_0 is clipped to [−1, 1], the sample shape and the map to pixels.
``examples/onnx_sample.py`` is a DDIM sampler over these two files in about forty lines of numpy.

Discrete variance-preserving schedules only: there the network reads x_t itself and the timestep itself
(:meth:`~difflab.schedules.Schedule.input_scale` is 1, ``model_time`` is t), so the graph needs no schedule inside.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import DifflabError

GRAPH = "model.onnx"
META = "onnx.json"
OPSET = 17
#: the largest |ONNX − PyTorch| output difference accepted when onnxruntime checks the graph after export
TOLERANCE = 1e-4


class _Network(torch.nn.Module):
    """The network with labels as a required input (the exporter traces positional inputs)."""

    def __init__(self, network: torch.nn.Module, conditional: bool):
        super().__init__()
        self.network, self.conditional = network, conditional

    def forward(self, x, t, y=None):
        return self.network(x, t, y) if self.conditional else self.network(x, t)


def _check(config: dict) -> None:
    diffusion = config["diffusion"]
    if "latent" in config:
        raise DifflabError("a latent diffusion run needs its autoencoder too; the ONNX export covers pixel-space runs.")
    if config["model"]["type"] not in ("unet", "mlp", "diffusers-unet2d"):
        raise DifflabError(f"a {config['model']['type']!r} network does not export to ONNX here (text conditioning "
                           "needs its tokenizer and encoder beside the graph).")
    if diffusion["parameterization"] not in ("eps", "x0", "v"):
        raise DifflabError(f"the ONNX sampler reads ε, x_0 or v predictions, not {diffusion['parameterization']!r}.")
    if diffusion.get("learned_variance"):
        raise DifflabError("a learned-variance network does not export to ONNX here (its variance output has no "
                           "reader in the ONNX sampler).")


def export(path: str | Path, out: str | Path, weights: str = "ema", notes: str = "") -> tuple[Path, float | None]:
    """Write the network of the model at ``path`` (a run, an exported model, a shipped name or a diffusers folder) as
    ``out/model.onnx`` with ``out/onnx.json``, atomically. When onnxruntime is installed the graph is run on a random
    batch and compared with PyTorch; returns (``out``, that max |difference|, or None unchecked)."""
    from .. import checkpoint
    from ..denoiser import build_denoiser, build_network
    from ..io import atomic_directory, check_writable
    from . import read_model

    out = Path(out)
    if out.exists():
        raise DifflabError(f"⟨out⟩ {str(out)!r} already exists; choose a new directory.")
    check_writable(out, "ONNX model directory", directory=True)
    _, config, state, step, where = read_model(path, weights)
    _check(config)
    network = build_network(config)
    checkpoint.load_into(network, state, where)
    network.eval()
    schedule = build_denoiser(network, config).schedule
    if not getattr(schedule, "discrete", False):
        raise DifflabError(f"the ONNX export covers discrete DDPM schedules (t = 1..T), not the continuous "
                           f"{config['diffusion']['schedule']!r} schedule.")
    k = config["model"].get("num_classes")
    shape = list(config["normalization"]["shape"])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, *shape, generator=gen)
    t = torch.tensor([1.0, float(schedule.T)])
    inputs = (x, t, torch.tensor([0, k])) if k else (x, t)
    names = ["x", "t", "y"][:len(inputs)]
    wrapped = _Network(network, bool(k)).eval()
    meta = {"format": 1, "inputs": names, "output": "out", "T": schedule.T,
            "alpha_bar": [float(v) for v in schedule.alpha_bar], "parameterization": config["diffusion"]["parameterization"],
            "clip": bool(config["sample"].get("clip")) and config["normalization"]["kind"] == "image",
            "shape": shape, "num_classes": k, "normalization": config["normalization"], "step": step, "notes": notes,
            "time": "t = 1..T, difflab's timestep (alpha_bar[t]); x_t = sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) eps"}
    with atomic_directory(out) as tmp:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, inputs, str(tmp / GRAPH), input_names=names, output_names=["out"],
                              dynamic_axes={n: {0: "batch"} for n in [*names, "out"]}, opset_version=OPSET,
                              dynamo=False)
        gap = check_graph(tmp / GRAPH, wrapped, shape, k)
        meta["max_abs_difference_to_pytorch"] = gap
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out, gap


def check_graph(graph: Path, network: torch.nn.Module, shape: list, num_classes: int | None) -> float | None:
    """max |ONNX − PyTorch| over a batch of 3 fresh inputs (other times and batch size than the traced ones), or None
    without onnxruntime; refuses a graph that differs by more than :data:`TOLERANCE`."""
    try:
        import onnxruntime
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, *shape, generator=gen)
    t = torch.tensor([3.0, 250.0, 777.0])
    feed = {"x": x.numpy(), "t": t.numpy()}
    args = (x, t)
    if num_classes:
        y = torch.tensor([num_classes, 0, num_classes - 1])
        feed["y"], args = y.numpy(), (x, t, y)
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, feed)[0])
    with torch.no_grad():
        want = network(*args)
    gap = float((got - want).abs().max())
    if not gap <= TOLERANCE:
        raise DifflabError(f"the ONNX graph's outputs differ from PyTorch's by {gap:.2e} (> {TOLERANCE}); not written.")
    return gap
