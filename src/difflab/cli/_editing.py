"""What the editing commands share: read the images (PNG or .npz, in [0, 1]), map them to the model's coordinates,
and map the result back and write it."""

from __future__ import annotations

import argparse

from ._args import error, integer


def common_arguments(p: argparse.ArgumentParser, sampler: str, steps: int = 50) -> None:
    p.add_argument("run", help="run directory, exported model, or pretrained name (mnist, fashion-mnist)")
    p.add_argument("--out", required=True, help="output file: .png or .npz (array 'samples', values in [0, 1])")
    p.add_argument("--sampler", default=None, help=f"sampler name (default {sampler}, or consistency for a consistency "
                   "model; `difflab samplers` lists them)")
    p.set_defaults(task_sampler=sampler)
    p.add_argument("--steps", type=integer, default=steps, help=f"sampling steps over the whole schedule (default {steps})")
    p.add_argument("--seed", type=integer, default=0, help="random seed")
    p.add_argument("--class", dest="label", type=integer, default=None, metavar="K",
                   help="class-conditional models: condition on class K (default: the null label, unconditional)")


def load_for_editing(a):
    """The run, its denoiser (with --class), and a seeded generator."""
    import torch

    from ..io import check_writable
    from ..run import load

    if not a.out.endswith((".png", ".npz")):
        raise error(f"output file {a.out!r} must end in .png or .npz.")
    check_writable(a.out, "--out file")
    if getattr(a, "gif", None) is not None:
        check_writable(a.gif, "--gif file")
    run = load(a.run)
    if run.kind != "image":
        raise error(f"difflab {a.command} edits images, but {a.run!r} models 2-D points.")
    if a.sampler is None:  # a consistency model edits with its own sampler (Song et al. 2023, Algorithm 4)
        a.sampler = "consistency" if run.parameterization == "consistency" else a.task_sampler
    denoiser = run.denoiser
    if a.label is not None:
        if not run.config["model"].get("num_classes"):
            raise error(f"--class needs a class-conditional model; {a.run!r} has no classes.")
        denoiser = denoiser.with_labels(a.label)
    return run, denoiser, torch.Generator().manual_seed(a.seed)


def read_images(run, path: str, flag: str = "--image", shape=None):
    """Images from ``path`` in model coordinates, checked against the model's (or ``shape``)."""
    from ..tasks._common import check_image
    from ..tasks.images import read_image

    x = read_image(path, flag)
    check_image(x, tuple(shape or run.shape), f"{flag} file {path!r}")
    return x


def write_images_of(run, x_model, path: str, nrow=None) -> None:
    from ..tasks.images import write_images
    write_images(run.normalization.to_data(x_model), path, nrow=nrow)
