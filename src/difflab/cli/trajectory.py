"""``difflab trajectory``: x_t and the predicted x_0 along a sampling run: PNG grid and animated GIF."""

from __future__ import annotations

import argparse

from ._args import error, integer
from ._editing import common_arguments, load_for_editing

NAME = "trajectory"
HELP = "x_t and the predicted x_0 along a sampling run: PNG grid and animated GIF"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddpm")
    p.add_argument("--num", type=integer, default=4, help="samples (default 4)")
    p.add_argument("--columns", type=integer, default=10, help="steps shown in the grid (default 10)")
    p.add_argument("--gif", default=None, help="also write the animation to this .gif")
    p.add_argument("--gaussian-start", type=float, default=None, metavar="SIGMA",
                   help="start the network at σ̃ = σ/α, the data's Gaussian carrying the noise down to there; 0 turns it "
                        "off (default: the model's own, with the model's own sampler; see difflab sample --help)")


def execute(a) -> None:
    from ..tasks import trajectory

    run, denoiser, gen = load_for_editing(a)
    if a.num < 1:
        raise error(f"--num must be a positive integer, got {a.num}.")
    if a.gif is not None and not a.gif.endswith(".gif"):
        raise error(f"--gif {a.gif!r} must end in .gif.")
    if a.gaussian_start is not None and a.gaussian_start < 0:
        raise error(f"--gaussian-start must be >= 0 (0 turns it off), got {a.gaussian_start:g}.")
    traj = trajectory.record(denoiser, (a.num, *run.shape), sampler=a.sampler, steps=a.steps, generator=gen,
                             **run.gaussian_options(a.sampler, a.gaussian_start))
    to_data = run.normalization.to_data
    if a.out.endswith(".npz"):
        import numpy as np

        from ..io import atomic_path
        with atomic_path(a.out) as tmp:
            np.savez(tmp, x_t=to_data(traj.x_t).numpy(), x0=to_data(traj.x0).numpy(), times=np.asarray(traj.times, float))
    else:
        trajectory.save_grid(traj, a.out, to_data, count=a.columns)
    if a.gif:
        trajectory.save_animation(traj, a.gif, to_data)
    start = run.gaussian_options(a.sampler, a.gaussian_start)["gaussian_start"]
    print(f"recorded {a.num} sample(s) over {len(traj.times)} steps ({a.sampler}"
          f"{f', from the Gaussian start σ̃ = {start:g}' if start else ''}) to {a.out}" + (f" and {a.gif}" if a.gif else ""))
