"""The editing commands: ``difflab inpaint``, ``edit``, ``upscale``, ``interpolate``, ``denoise``, ``trajectory``.

A thin shell over :mod:`difflab.tasks`: read the images (PNG or .npz, in [0, 1]), map them to the model's
coordinates, run the task, map back and write. ``add_parsers(sub)`` adds the subcommands; ``COMMANDS`` maps
their names to handlers, which :mod:`difflab.cli.main` merges into its own.
"""

from __future__ import annotations

import argparse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.2,0.5, got {text!r}") from None


def _common(p: argparse.ArgumentParser, sampler: str, steps: int = 50) -> None:
    p.add_argument("run", help="run directory, exported model, or pretrained name (mnist, fashion-mnist)")
    p.add_argument("--out", required=True, help="output file: .png or .npz (array 'samples', values in [0, 1])")
    p.add_argument("--sampler", default=sampler, help=f"sampler name (default {sampler}; `difflab samplers` lists them)")
    p.add_argument("--steps", type=_int, default=steps, help=f"sampling steps over the whole schedule (default {steps})")
    p.add_argument("--seed", type=_int, default=0, help="random seed")
    p.add_argument("--class", dest="label", type=_int, default=None, metavar="K",
                   help="class-conditional models: condition on class K (default: the null label, unconditional)")


def add_parsers(sub) -> None:
    """Add the editing subcommands to the ``difflab`` subparsers ``sub``."""
    p = sub.add_parser("inpaint", help="fill the masked part of images (replacement or RePaint)")
    _common(p, "ddpm")
    p.add_argument("--image", required=True, help="image(s) to complete: .png or .npz")
    p.add_argument("--mask", required=True,
                   help="the part to fill: right, left, bottom, top, center, a box x0,y0,x1,y1 (pixels, end exclusive), "
                        "or a PNG of the image's size (white = known, black = fill)")
    p.add_argument("--method", default="replacement", choices=["replacement", "repaint"],
                   help="replacement (Song et al. 2021, App. I; use --sampler pc for score-SDE runs) or repaint "
                        "(Lugmayr et al. 2022)")
    p.add_argument("--jump", type=_int, default=5, help="RePaint jump length j, in sampler steps (default 5)")
    p.add_argument("--repeats", type=_int, default=5, help="RePaint resamplings r (default 5)")

    p = sub.add_parser("edit", help="SDEdit: noise a guide image to strength t0 and denoise it")
    _common(p, "ddim")
    p.add_argument("--image", required=True, help="guide image(s): .png or .npz")
    p.add_argument("--strength", type=float, required=True, help="t0 in (0, 1]: the fraction of the schedule to noise to")

    p = sub.add_parser("upscale", help="super-resolve low-resolution images (SR3 model, or ILVR with any model)")
    _common(p, "ddpm")
    p.add_argument("--image", required=True, help="low-resolution image(s): .png or .npz")
    p.add_argument("--method", default="sr3", choices=["sr3", "ilvr"],
                   help="sr3: a model trained with data.low_res_factor (preset mnist-sr); ilvr: zero-shot low-pass "
                        "guidance of an unconditional model (Choi et al. 2021)")
    p.add_argument("--start", type=float, default=1.0,
                   help="sr3: t0 in (0, 1]; below 1 sampling starts from the bicubic image noised to t0 (Chung et al. 2022) "
                        "instead of pure noise (default 1)")

    p = sub.add_parser("interpolate", help="interpolate between two images (DDIM inversion + slerp, or DDPM mixing)")
    _common(p, "ddim")
    p.add_argument("--image", required=True, help="first image (.png or .npz)")
    p.add_argument("--image2", required=True, help="second image, same size")
    p.add_argument("--method", default="ddim", choices=["ddim", "ddpm"],
                   help="ddim: invert both, slerp x_T, decode (Song et al. 2021); ddpm: noise both to t, mix, denoise "
                        "(Ho et al. 2020, Sec. 4.3)")
    p.add_argument("--num", type=_int, default=9, help="points along λ from 0 to 1 (default 9)")
    p.add_argument("--t", type=_floats, default=[0.25, 0.5, 0.75],
                   help="ddpm: the times to noise to, as fractions of the schedule (default 0.25,0.5,0.75); one row each")

    p = sub.add_parser("denoise", help="denoise images with Gaussian noise of known std (Sohl-Dickstein et al. 2015)")
    _common(p, "ddim")
    p.add_argument("--image", required=True, help="noisy image(s): .png or .npz (the noise may leave [0, 1] in an .npz)")
    p.add_argument("--noise-std", type=float, required=True, help="the noise's standard deviation in pixel units of [0, 1]")

    p = sub.add_parser("trajectory", help="x_t and the predicted x_0 along a sampling run: PNG grid and animated GIF")
    _common(p, "ddpm")
    p.add_argument("--num", type=_int, default=4, help="samples (default 4)")
    p.add_argument("--columns", type=_int, default=10, help="steps shown in the grid (default 10)")
    p.add_argument("--gif", default=None, help="also write the animation to this .gif")


def _error(message: str):
    from ..errors import DifflabError
    return DifflabError(message)


def _load(a):
    """The run, its denoiser (with --class), and a seeded generator."""
    import torch

    from ..run import load

    run = load(a.run)
    if run.kind != "image":
        raise _error(f"difflab {a.command} edits images, but {a.run!r} models 2-D points.")
    if not a.out.endswith((".png", ".npz")):
        raise _error(f"output file {a.out!r} must end in .png or .npz.")
    denoiser = run.denoiser
    if a.label is not None:
        if not run.config["model"].get("num_classes"):
            raise _error(f"--class needs a class-conditional model; {a.run!r} has no classes.")
        denoiser = denoiser.with_labels(a.label)
    return run, denoiser, torch.Generator().manual_seed(a.seed)


def _images(run, path: str, flag: str = "--image", shape=None):
    """Images from ``path`` in model coordinates, checked against the model's (or ``shape``)."""
    from ..tasks._common import check_image
    from ..tasks.images import read_image

    x = read_image(path, flag)
    check_image(x, tuple(shape or run.shape), f"{flag} file {path!r}")
    return x


def _write(run, x_model, path: str, nrow=None) -> None:
    from ..tasks.images import write_images
    write_images(run.normalization.to_data(x_model), path, nrow=nrow)


def _cmd_inpaint(a) -> None:
    from ..tasks import inpaint

    run, denoiser, gen = _load(a)
    images = _images(run, a.image)
    mask = inpaint.check_mask(inpaint.mask_from_spec(a.mask, run.shape), images)
    options = {"jump": a.jump, "repeats": a.repeats} if a.method == "repaint" else {}
    out = inpaint.inpaint(denoiser, run.normalization.to_model(images), mask, method=a.method, sampler=a.sampler,
                          steps=a.steps, generator=gen, **options)
    from ..tasks.images import write_images
    write_images(inpaint.paste(run.normalization.to_data(out), images, mask), a.out)
    print(f"inpainted {images.shape[0]} image(s) ({a.method}, {a.sampler}, {a.steps} steps) to {a.out}")


def _cmd_edit(a) -> None:
    from ..tasks.sdedit import sdedit

    run, denoiser, gen = _load(a)
    guide = _images(run, a.image)
    out = sdedit(denoiser, run.normalization.to_model(guide), a.strength, sampler=a.sampler, steps=a.steps, generator=gen)
    _write(run, out, a.out)
    print(f"edited {guide.shape[0]} image(s) at strength {a.strength} ({a.sampler}) to {a.out}")


def _cmd_upscale(a) -> None:
    from ..tasks import superres

    run, denoiser, gen = _load(a)
    if a.method == "sr3":
        factor = superres.factor_of(run)
        c, h, w = run.shape
        low = _images(run, a.image, shape=(c, h // factor, w // factor))
        out = superres.sr3(run, low, sampler=a.sampler, steps=a.steps, generator=gen, start=a.start)
        from ..tasks.images import write_images
        write_images(out, a.out)
    else:
        from ..tasks.ilvr import ilvr

        if run.config["data"].get("low_res_factor"):
            raise _error(f"{a.run!r} is an SR3 model; use --method sr3 (ILVR needs an unconditional model).")
        from ..tasks.images import read_image
        low = read_image(a.image, "--image")
        c, h, w = run.shape
        factor = h // low.shape[-2] if low.shape[-2] else 0
        if low.ndim != 4 or low.shape[1] != c or factor < 1 or low.shape[-2] * factor != h or low.shape[-1] * factor != w:
            raise _error(f"--image file {a.image!r} has shape {tuple(low.shape[1:])}; ILVR needs {c}-channel images whose "
                         f"size divides the model's {h}x{w} (e.g. {h // 2}x{w // 2}).")
        out = ilvr(denoiser, run.normalization.to_model(low), factor, sampler=a.sampler, steps=a.steps, generator=gen)
        _write(run, out, a.out)
    print(f"upscaled {a.image} ({a.method}) to {a.out}")


def _cmd_interpolate(a) -> None:
    import torch

    from ..tasks import interpolate
    from ..tasks._common import start_time

    run, denoiser, gen = _load(a)
    x_a, x_b = _images(run, a.image), _images(run, a.image2, "--image2")
    if x_a.shape != x_b.shape:
        raise _error(f"--image and --image2 hold {x_a.shape[0]} and {x_b.shape[0]} images; give as many of each.")
    lams = interpolate.lambda_grid(a.num)
    z_a, z_b = run.normalization.to_model(x_a), run.normalization.to_model(x_b)
    if a.method == "ddim":
        out = interpolate.ddim_interpolate(denoiser, z_a, z_b, lams, steps=a.steps)  # (L, B, ...)
        rows = out.transpose(0, 1)
    else:
        times = [start_time(run.schedule, t) for t in a.t]
        if min(times) < float(run.schedule.t_min):
            raise _error(f"--t {min(a.t)} is below the schedule's first step.")
        rows = torch.cat([interpolate.ddpm_interpolate(denoiser, z_a[:1], z_b[:1], lams, t, sampler=a.sampler,
                                                       steps=a.steps, seed=a.seed)[:, 0][None] for t in times])
    _write(run, rows.reshape(-1, *run.shape), a.out, nrow=len(lams))
    print(f"wrote {rows.shape[0]} row(s) of {len(lams)} interpolations ({a.method}) to {a.out}")


def _cmd_denoise(a) -> None:
    from ..tasks.denoise import data_to_model_std, denoise, matching_step, noise_to_signal

    run, denoiser, gen = _load(a)
    from ..tasks._common import check_image
    from ..tasks.images import read_image
    noisy = read_image(a.image, "--image", bounded=False)
    check_image(noisy, run.shape, f"--image file {a.image!r}")
    std = data_to_model_std(a.noise_std, run.normalization.scale)
    t = matching_step(run.schedule, std)
    out = denoise(denoiser, run.normalization.to_model(noisy), std, sampler=a.sampler, steps=a.steps, generator=gen)
    _write(run, out, a.out)
    print(f"denoised {noisy.shape[0]} image(s) of noise std {a.noise_std} from step t = {t} "
          f"(σ_t/α_t = {noise_to_signal(run.schedule, t):.4g} in model units, asked {std:.4g}) to {a.out}")


def _cmd_trajectory(a) -> None:
    from ..tasks import trajectory

    run, denoiser, gen = _load(a)
    if a.num < 1:
        raise _error(f"--num must be a positive integer, got {a.num}.")
    if a.gif is not None and not a.gif.endswith(".gif"):
        raise _error(f"--gif {a.gif!r} must end in .gif.")
    traj = trajectory.record(denoiser, (a.num, *run.shape), sampler=a.sampler, steps=a.steps, generator=gen)
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
    print(f"recorded {a.num} sample(s) over {len(traj.times)} steps ({a.sampler}) to {a.out}" + (f" and {a.gif}" if a.gif else ""))


COMMANDS = {"inpaint": _cmd_inpaint, "edit": _cmd_edit, "upscale": _cmd_upscale, "interpolate": _cmd_interpolate,
            "denoise": _cmd_denoise, "trajectory": _cmd_trajectory}
