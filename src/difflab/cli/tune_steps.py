"""``difflab tune-steps``: tune a sampler's time steps for a run at a budget of network evaluations."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "tune-steps"
HELP = "tune a deterministic sampler's time steps for a run at a given NFE (saved with the run)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory (or an exported model directory you can write to)")
    p.add_argument("--nfe", type=integer, required=True, help="network evaluations the sampler may make")
    p.add_argument("--sampler", default=None, help="a deterministic sampler (default: the run's, e.g. ddim)")
    p.add_argument("--num", type=integer, default=256, help="noise draws to tune on (and as many others to report on)")
    p.add_argument("--seed", type=integer, default=0, help="seed of the tuning draws (the reported ones use seed + 1)")
    p.add_argument("--max-evaluations", type=integer, default=400, metavar="K",
                   help="sampler runs the search may make (Powell's method); the search costs about "
                        "NUM x K x NFE network evaluations: seconds for a toy, hours for MNIST on a CPU (lower NUM and K)")
    p.add_argument("--no-progress", action="store_true")


def execute(a) -> None:
    import os
    from pathlib import Path

    from .. import pretrained, tuning
    from ..run import load

    if a.num < 1:
        raise error(f"--num must be a positive integer, got {a.num}.")
    if a.max_evaluations < 1:
        raise error(f"--max-evaluations must be a positive integer, got {a.max_evaluations}.")
    if not Path(a.run).is_dir() and pretrained.shipped_path(a.run) is not None:
        raise error(f"{a.run!r} is a shipped model, which is read-only; copy its directory "
                    f"{str(pretrained.shipped_path(a.run))!r} to one of your own and tune that.")
    run = load(a.run)
    if not os.access(run.path, os.W_OK):
        raise error(f"cannot save tuned steps: {str(run.path)!r} is not writable.")
    sampler = a.sampler or run.config["sample"]["sampler"]
    shape = run.shape if run.codec is None else run.codec.shape
    tuned = tuning.tune(run.denoiser, shape, sampler, a.nfe, num=a.num, seed=a.seed,
                        max_evaluations=a.max_evaluations, progress=not a.no_progress)
    path = tuning.save(run.path, tuned)
    print(f"{sampler} at {a.nfe} NFE ({tuned.steps} steps): mean squared distance to the ODE solution on {a.num} "
          "held-out draws")
    for name, value in tuned.errors.items():
        print(f"  {name:<10} {value:.6g}")
    print(f"tuned times {[round(t, 3) for t in tuned.times]} saved to {path}; sample with --discretization tuned "
          f"--sampler {sampler} --steps {tuned.steps}")
