"""``difflab neighbors``: each sample beside its nearest training images, and the share that copies one."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "neighbors"
HELP = "each sample beside its nearest training images (pixels and judge features) and a memorization rate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, exported model or pretrained name (mnist, fashion-mnist)")
    p.add_argument("--num", type=integer, default=200, help="samples to draw and check (default 200)")
    p.add_argument("--k", type=integer, default=3, help="nearest training images shown per sample and space (default 3)")
    p.add_argument("--rows", type=integer, default=12, help="samples shown in the picture (default 12)")
    p.add_argument("--sampler", default=None, help="sampler (default: the run's)")
    p.add_argument("--steps", type=integer, default=None, help="sampling steps (default: the run's)")
    p.add_argument("--seed", type=integer, default=0)
    p.add_argument("--batch-size", type=integer, default=500)
    p.add_argument("--out", default="neighbors.png", help="the picture: samples and their neighbours (.png)")
    p.add_argument("--json", default=None, help="also write the rates and the copied samples' indices here (.json)")
    p.add_argument("--no-progress", action="store_true")


def execute(a) -> None:
    import json

    from ..io import check_writable, write_text
    from ..run import load
    from ..tasks import neighbors

    for flag, value in (("--num", a.num), ("--k", a.k), ("--rows", a.rows), ("--batch-size", a.batch_size)):
        if value < 1:
            raise error(f"{flag} must be a positive integer, got {value}.")
    if not a.out.endswith(".png"):
        raise error(f"--out {a.out!r} must end in .png.")
    check_writable(a.out, "--out file")
    if a.json is not None:
        if not a.json.endswith(".json"):
            raise error(f"--json {a.json!r} must end in .json.")
        check_writable(a.json, "--json file")
    run = load(a.run)
    neighbors.check(run)
    result = neighbors.find(run, a.num, a.k, a.sampler, a.steps, a.seed, a.batch_size, progress=not a.no_progress)
    neighbors.figure(result, a.out, rows=min(a.rows, a.num))
    summary = {"run": a.run, "sampler": a.sampler or run.config["sample"]["sampler"],
               "steps": a.steps or run.config["sample"]["steps"], "seed": a.seed, **result.summary()}
    if a.json:
        write_text(a.json, json.dumps(summary, indent=1) + "\n")
    print(f"{a.run}: {a.num} samples against its {len(result.train)} training images "
          f"({result.num_heldout} held-out images calibrate the threshold):")
    for s in result.spaces:
        m = s.memorization
        print(f"  {s.name:<28} memorized {m.rate:6.1%}  (held-out real images: {m.floor:.1%}; a sample counts when it "
              f"lies within {m.threshold:.3g}, a third of the held-out median {m.heldout_median:.3g})")
    print(f"wrote {a.out}" + (f" and {a.json}" if a.json else ""))
