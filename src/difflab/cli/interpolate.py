"""``difflab interpolate``: interpolate between two images (DDIM inversion + slerp, or DDPM mixing)."""

from __future__ import annotations

import argparse

from ._args import error, integer, numbers
from ._editing import common_arguments, load_for_editing, read_images, write_images_of

NAME = "interpolate"
HELP = "interpolate between two images (DDIM inversion + slerp, or DDPM mixing)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddim")
    p.add_argument("--image", required=True, help="first image (.png or .npz)")
    p.add_argument("--image2", required=True, help="second image, same size")
    p.add_argument("--method", default="ddim", choices=["ddim", "ddpm"],
                   help="ddim: invert both, slerp x_T, decode (Song et al. 2021); ddpm: noise both to t, mix, denoise "
                        "(Ho et al. 2020, Sec. 4.3)")
    p.add_argument("--num", type=integer, default=9, help="points along λ from 0 to 1 (default 9)")
    p.add_argument("--t", type=numbers, default=[0.25, 0.5, 0.75],
                   help="ddpm: the times to noise to, as fractions of the schedule (default 0.25,0.5,0.75); one row each")


def execute(a) -> None:
    import torch

    from ..tasks import interpolate
    from ..tasks._common import start_time

    run, denoiser, gen = load_for_editing(a)
    x_a, x_b = read_images(run, a.image), read_images(run, a.image2, "--image2")
    if x_a.shape != x_b.shape:
        raise error(f"--image and --image2 hold {x_a.shape[0]} and {x_b.shape[0]} images; give as many of each.")
    lams = interpolate.lambda_grid(a.num)
    z_a, z_b = run.normalization.to_model(x_a), run.normalization.to_model(x_b)
    if a.method == "ddim":
        if run.parameterization == "consistency":
            raise error("--method ddim inverts the probability-flow ODE with the model's ε̂, and a consistency model "
                        "maps each point to its trajectory's end instead of giving that ODE's direction: use "
                        "--method ddpm.")
        out = interpolate.ddim_interpolate(denoiser, z_a, z_b, lams, steps=a.steps)  # (L, B, ...)
        rows = out.transpose(0, 1)
    else:
        times = [start_time(run.schedule, t) for t in a.t]
        if min(times) < float(run.schedule.t_min):
            raise error(f"--t {min(a.t)} is below the schedule's first step.")
        rows = torch.cat([interpolate.ddpm_interpolate(denoiser, z_a[:1], z_b[:1], lams, t, sampler=a.sampler,
                                                       steps=a.steps, seed=a.seed)[:, 0][None] for t in times])
    write_images_of(run, rows.reshape(-1, *run.shape), a.out, nrow=len(lams))
    print(f"wrote {rows.shape[0]} row(s) of {len(lams)} interpolations ({a.method}) to {a.out}")
