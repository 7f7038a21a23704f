"""``difflab inpaint``: fill the masked part of images (replacement or RePaint)."""

from __future__ import annotations

import argparse

from ._args import integer
from ._editing import common_arguments, load_for_editing, read_images

NAME = "inpaint"
HELP = "fill the masked part of images (replacement or RePaint)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddpm")
    p.add_argument("--image", required=True, help="image(s) to complete: .png or .npz")
    p.add_argument("--mask", required=True,
                   help="the part to fill: right, left, bottom, top, center, a box x0,y0,x1,y1 (pixels, end exclusive), "
                        "or a PNG of the image's size (white = known, black = fill)")
    p.add_argument("--method", default="replacement", choices=["replacement", "repaint"],
                   help="replacement (Song et al. 2021, App. I; use --sampler pc for score-SDE runs) or repaint "
                        "(Lugmayr et al. 2022)")
    p.add_argument("--jump", type=integer, default=5, help="RePaint jump length j, in sampler steps (default 5)")
    p.add_argument("--repeats", type=integer, default=5, help="RePaint resamplings r (default 5)")


def execute(a) -> None:
    from ..tasks import inpaint

    run, denoiser, gen = load_for_editing(a)
    images = read_images(run, a.image)
    mask = inpaint.check_mask(inpaint.mask_from_spec(a.mask, run.shape), images)
    options = {"jump": a.jump, "repeats": a.repeats} if a.method == "repaint" else {}
    out = inpaint.inpaint(denoiser, run.normalization.to_model(images), mask, method=a.method, sampler=a.sampler,
                          steps=a.steps, generator=gen, **options)
    from ..tasks.images import write_images
    write_images(inpaint.paste(run.normalization.to_data(out), images, mask), a.out)
    print(f"inpainted {images.shape[0]} image(s) ({a.method}, {a.sampler}, {a.steps} steps) to {a.out}")
