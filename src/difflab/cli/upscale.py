"""``difflab upscale``: super-resolve low-resolution images (SR3 model, or ILVR with any model)."""

from __future__ import annotations

import argparse

from ._args import error
from ._editing import common_arguments, load_for_editing, read_images, write_images_of

NAME = "upscale"
HELP = "super-resolve low-resolution images (SR3 model, or ILVR with any model)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_arguments(p, "ddpm")
    p.add_argument("--image", required=True, help="low-resolution image(s): .png or .npz")
    p.add_argument("--method", default="sr3", choices=["sr3", "ilvr"],
                   help="sr3: a model trained with data.low_res_factor (preset mnist-sr); ilvr: zero-shot low-pass "
                        "guidance of an unconditional model (Choi et al. 2021)")
    p.add_argument("--start", type=float, default=1.0,
                   help="sr3: t0 in (0, 1]; below 1 sampling starts from the bicubic image noised to t0 (Chung et al. 2022) "
                        "instead of pure noise (default 1)")


def execute(a) -> None:
    from ..tasks import superres

    run, denoiser, gen = load_for_editing(a)
    if a.method == "sr3":
        factor = superres.factor_of(run)
        c, h, w = run.shape
        low = read_images(run, a.image, shape=(c, h // factor, w // factor))
        out = superres.sr3(run, low, sampler=a.sampler, steps=a.steps, generator=gen, start=a.start)
        from ..tasks.images import write_images
        write_images(out, a.out)
    else:
        from ..tasks.ilvr import ilvr

        if run.config["data"].get("low_res_factor"):
            raise error(f"{a.run!r} is an SR3 model; use --method sr3 (ILVR needs an unconditional model).")
        from ..tasks.images import read_image
        low = read_image(a.image, "--image")
        c, h, w = run.shape
        factor = h // low.shape[-2] if low.shape[-2] else 0
        if low.ndim != 4 or low.shape[1] != c or factor < 1 or low.shape[-2] * factor != h or low.shape[-1] * factor != w:
            raise error(f"--image file {a.image!r} has shape {tuple(low.shape[1:])}; ILVR needs {c}-channel images whose "
                         f"size divides the model's {h}x{w} (e.g. {h // 2}x{w // 2}).")
        out = ilvr(denoiser, run.normalization.to_model(low), factor, sampler=a.sampler, steps=a.steps, generator=gen)
        write_images_of(run, out, a.out)
    print(f"upscaled {a.image} ({a.method}) to {a.out}")
