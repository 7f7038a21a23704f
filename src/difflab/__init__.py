"""difflab: diffusion models from the papers in one small PyTorch core.

    import difflab
    run = difflab.load("runs/digits")                 # a trained run directory
    x = run.sample(16, sampler="ddim", steps=50)      # samples in data coordinates
    schedule = difflab.schedules.get("cosine", T=1000)
    x = difflab.sample(denoiser, (16, 2), sampler="ddpm", steps=1000, generator=g)

Submodules are imported on first use, so ``import difflab`` is fast.
"""

from __future__ import annotations

from .lazy import exports
from .malloc import keep_large_blocks

__version__ = "0.1.0"

keep_large_blocks()  # large tensors stay in the heap: see difflab.malloc (DIFFLAB_MALLOC=default turns it off)

_SUBMODULES = {"schedules", "process", "denoiser", "objectives", "samplers", "models", "data", "training",
               "config", "plotting", "random", "run", "io", "errors", "progress", "toy", "sde", "likelihood",
               "guidance", "pretrained", "variational_bound", "timestep_sampling", "metrics", "malloc", "lazy"}
_ATTRIBUTES = {
    "load": ("run", "load"),
    "Run": ("run", "Run"),
    "sample": ("samplers", "sample"),
    "DifflabError": ("errors", "DifflabError"),
    "ModelDenoiser": ("denoiser", "ModelDenoiser"),
    "Prediction": ("denoiser", "Prediction"),
}

__all__, __getattr__, __dir__ = exports(__name__, _SUBMODULES, _ATTRIBUTES)
