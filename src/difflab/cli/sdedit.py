"""``difflab edit``: SDEdit: noise a guide image to strength t0 and denoise it."""

from __future__ import annotations

import argparse

from ._editing import common_arguments, load_for_editing, read_images, write_images_of

NAME = "edit"
HELP = "SDEdit: noise a guide image to strength t0 and denoise it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddim")
    p.add_argument("--image", required=True, help="guide image(s): .png or .npz")
    p.add_argument("--strength", type=float, required=True, help="t0 in (0, 1]: the fraction of the schedule to noise to")


def execute(a) -> None:
    from ..tasks.sdedit import sdedit

    run, denoiser, gen = load_for_editing(a)
    guide = read_images(run, a.image)
    out = sdedit(denoiser, run.normalization.to_model(guide), a.strength, sampler=a.sampler, steps=a.steps, generator=gen)
    write_images_of(run, out, a.out)
    print(f"edited {guide.shape[0]} image(s) at strength {a.strength} ({a.sampler}) to {a.out}")
