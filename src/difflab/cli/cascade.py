"""``difflab cascade``: a base model at low resolution, optionally guided, then a super-resolution model."""

from __future__ import annotations

import argparse

from ._args import class_list, error, integer

NAME = "cascade"
HELP = "two-stage sampling: a (guided) low-resolution base model, then an SR3 upsampler (ADM-G + ADM-U)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the low-resolution base model (run directory or export)")
    p.add_argument("upsampler", help="the super-resolution model (trained with data.low_res_factor, e.g. preset mnist-sr)")
    p.add_argument("--num", type=integer, default=64, help="number of samples (default 64)")
    p.add_argument("--sampler", default=None, help="the base model's sampler (default: its config's)")
    p.add_argument("--steps", type=integer, default=None, help="the base model's sampling steps")
    p.add_argument("--class", dest="classes", type=class_list, default=None, metavar="K1,K2,...",
                   help="class-conditional base: sample i gets class K[i mod len]")
    p.add_argument("--guidance", default=None, choices=["cfg", "classifier", "none"], help="guide the base model")
    p.add_argument("--classifier", default=None, metavar="DIR", help="noise-aware classifier for --guidance classifier")
    p.add_argument("--scale", type=float, default=None, help="guidance scale (default 3 for cfg, 1 for classifier)")
    p.add_argument("--sr-sampler", default="ddpm", help="the upsampler's sampler (default ddpm, SR3's ancestral)")
    p.add_argument("--sr-steps", type=integer, default=50, help="the upsampler's steps (default 50)")
    p.add_argument("--sr-start", type=float, default=1.0,
                   help="t0 in (0, 1]: below 1 the upsampler starts from the bicubic image noised to t0 (default 1)")
    p.add_argument("--seed", type=integer, default=0, help="seed; sample i depends on (seed, i) alone")
    p.add_argument("--batch-size", type=integer, default=500)
    p.add_argument("--out", required=True, help="the high-resolution samples: .png grid or .npz (array 'samples')")
    p.add_argument("--low", default=None, help="also write the base model's low-resolution samples (.png or .npz)")
    p.add_argument("--no-progress", action="store_true")


def execute(a) -> None:
    from ..io import check_writable
    from ..run import load, save_samples
    from ..tasks.cascade import cascade, check_pair

    if a.num < 1 or a.batch_size < 1 or a.sr_steps < 1:
        raise error("--num, --batch-size and --sr-steps must be positive integers.")
    if not 0 < a.sr_start <= 1:
        raise error(f"--sr-start must lie in (0, 1], got {a.sr_start}.")
    for flag, path in (("--out", a.out), ("--low", a.low)):
        if path is not None:
            if not path.endswith((".png", ".npz")):
                raise error(f"{flag} file {path!r} must end in .png or .npz.")
            check_writable(path, f"{flag} file")
    if a.scale is not None and a.guidance in (None, "none"):
        raise error("--scale needs --guidance cfg or --guidance classifier.")
    if (a.guidance == "classifier") != (a.classifier is not None):
        raise error("--guidance classifier and --classifier DIR go together.")
    base, upsampler = load(a.base), load(a.upsampler)
    factor = check_pair(base, upsampler)
    classifier = None
    if a.classifier is not None:
        from ..saved import load_classifier
        classifier = load_classifier(a.classifier)
    scale = a.scale if a.scale is not None else {"cfg": 3.0, "classifier": 1.0}.get(a.guidance, 0.0)
    options = {"sampler": a.sampler, "steps": a.steps, "classes": a.classes, "guidance": a.guidance, "scale": scale,
               "classifier": classifier}
    result = cascade(base, upsampler, a.num, a.seed, options, a.sr_sampler, a.sr_steps, a.sr_start, a.batch_size,
                     progress=not a.no_progress)
    save_samples(result.high, a.out, "image")
    if a.low:
        save_samples(result.low, a.low, "image")
    print(f"wrote {a.num} samples: {'x'.join(map(str, base.shape))} from {a.base}, upscaled ×{factor} by "
          f"{a.upsampler}, to {a.out}" + (f" (base samples: {a.low})" if a.low else ""))
