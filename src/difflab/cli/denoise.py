"""``difflab denoise``: denoise images with Gaussian noise of known std (Sohl-Dickstein et al. 2015)."""

from __future__ import annotations

import argparse

from ._editing import common_arguments, load_for_editing, write_images_of

NAME = "denoise"
HELP = "denoise images with Gaussian noise of known std (Sohl-Dickstein et al. 2015)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddim")
    p.add_argument("--image", required=True, help="noisy image(s): .png or .npz (the noise may leave [0, 1] in an .npz)")
    p.add_argument("--noise-std", type=float, required=True, help="the noise's standard deviation in pixel units of [0, 1]")


def execute(a) -> None:
    from ..tasks.denoise import (
        data_to_model_std,
        denoise,
        matching_step,
        noise_to_signal,
    )

    run, denoiser, gen = load_for_editing(a)
    from ..tasks._common import check_image
    from ..tasks.images import read_image
    noisy = read_image(a.image, "--image", bounded=False)
    check_image(noisy, run.shape, f"--image file {a.image!r}")
    std = data_to_model_std(a.noise_std, run.normalization.scale)
    t = matching_step(run.schedule, std)
    out = denoise(denoiser, run.normalization.to_model(noisy), std, sampler=a.sampler, steps=a.steps, generator=gen)
    write_images_of(run, out, a.out)
    print(f"denoised {noisy.shape[0]} image(s) of noise std {a.noise_std} from step t = {t} "
          f"(σ_t/α_t = {noise_to_signal(run.schedule, t):.4g} in model units, asked {std:.4g}) to {a.out}")
