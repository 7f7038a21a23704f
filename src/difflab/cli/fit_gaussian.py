"""``difflab fit-gaussian``: fit the data's Gaussian to a run's training data and keep it with the run, so that
sampling may start from it (``--gaussian-start``; :mod:`difflab.data_gaussian`)."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "fit-gaussian"
HELP = "fit the training data's Gaussian and keep it with the run (for sample --gaussian-start)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (or an exported model directory you can write to)")
    p.add_argument("--rank", type=integer, default=None,
                   help="leading eigenpairs of the covariance to keep (default 1024: every pixel up to 32x32x1); the "
                        "other directions share one variance")


def execute(a) -> None:
    import os
    from pathlib import Path

    from .. import pretrained
    from ..data import load_dataset
    from ..data_gaussian import FILE, RANK, DataGaussian
    from ..run import load

    if a.rank is not None and a.rank < 1:
        raise error(f"--rank must be a positive integer, got {a.rank}.")
    if not Path(a.run).is_dir() and pretrained.shipped_path(a.run) is not None:
        raise error(f"{a.run!r} is a shipped model, which is read-only and already keeps its Gaussian; copy its "
                    f"directory {str(pretrained.shipped_path(a.run))!r} to fit another.")
    run = load(a.run)
    if run.codec is not None:
        raise error("a latent run samples latents; the data Gaussian is one of pixels, so it does not apply.")
    if not os.access(run.path, os.W_OK):
        raise error(f"cannot save the Gaussian: {str(run.path)!r} is not writable.")
    d = run.config["data"]
    data = load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=d["num"],
                        split="train", seed=run.config["seed"]).data
    gaussian = DataGaussian.fit(run.normalization.to_model(data), rank=a.rank or RANK)
    path = gaussian.save(run.path / FILE)
    top = gaussian.variances[:3].tolist()
    print(f"fitted the Gaussian of {data.shape[0]} training examples ({gaussian.dim} dimensions, {len(gaussian.variances)} "
          f"eigenpairs kept; leading variances {', '.join(f'{v:.3g}' for v in top)}) to {path}; sample with "
          "--gaussian-start 5 (or set sample.gaussian_start in the run's config)")
