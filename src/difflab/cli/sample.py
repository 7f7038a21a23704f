"""``difflab sample``: draw samples from a trained run."""

from __future__ import annotations

import argparse

from ._args import class_list, error, integer, parse_options

NAME = "sample"
HELP = "draw samples from a trained run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, exported model, or pretrained name (mnist, fashion-mnist)")
    p.add_argument("--sampler", default=None, help="sampler name (default: the run's config; ddpm or ddim)")
    p.add_argument("--steps", type=integer, default=None, help="number of sampling steps, 1..T")
    p.add_argument("--num", type=integer, default=64, help="number of samples")
    p.add_argument("--eta", type=float, default=None, help="DDIM η >= 0 (0: deterministic)")
    p.add_argument("--variance", default=None,
                   help="DDPM σ²: beta_tilde, beta or learned (default: learned for a learned-variance model, else beta_tilde)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler option, e.g. order=2 (dpm_solver), rtol=1e-4 (ode), snr=0.16 (pc); repeatable; "
                        "`difflab samplers` lists the samplers")
    p.add_argument("--discretization", default=None,
                   help="times visited: trailing, leading, linspace, quadratic, karras, logsnr, sections:90,60,..., or "
                        "tuned (the run's, from difflab tune-steps) (default: trailing for discrete schedules, logsnr "
                        "for continuous ones)")
    p.add_argument("--gaussian-start", type=float, default=None, metavar="SIGMA",
                   help="noise level σ̃ = σ/α below which the network takes over from the data's Gaussian, whose exact "
                        "flow carries the noise down to there at no network evaluation (Wang & Vastola 2024); 0 turns "
                        "it off (default: the model's own, in its config's sample section, with the model's own sampler)")
    p.add_argument("--seed", type=integer, default=0, help="seed; sample i depends on (seed, i) alone")
    p.add_argument("--batch-size", type=integer, default=1000, help="samples drawn at once")
    p.add_argument("--out", required=True, help="output file: .png (grid or scatter) or .npz (array 'samples')")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--class", dest="classes", type=class_list, default=None, metavar="K",
                   help="class-conditional models: the class to draw (or a list 3,7: sample i gets the i-th in turn)")
    p.add_argument("--classes", dest="classes", type=class_list, metavar="K1,K2,...", help="same as --class")
    p.add_argument("--compose", action="store_true",
                   help="condition every sample on all the --classes at once (a product of experts)")
    p.add_argument("--guidance", default=None, choices=["cfg", "classifier", "none"],
                   help="cfg: classifier-free guidance towards the classes (needs a model trained with label dropout); "
                        "classifier: classifier guidance by the --classifier (Dhariwal & Nichol 2021)")
    p.add_argument("--classifier", default=None, metavar="DIR",
                   help="with --guidance classifier: a noise-aware classifier run (difflab train-classifier) trained on "
                        "the model's data and schedule")
    p.add_argument("--prompt", dest="prompts", action="append", default=None, metavar="TEXT",
                   help="text-conditioned models: the prompt, e.g. \"a seven on the left and a two on the right\" "
                        "(repeatable: sample i gets the i-th in turn); guided by cfg (default scale 3)")
    p.add_argument("--scale", type=float, default=None,
                   help="guidance scale: cfg's w (Ho & Salimans 2022, Eq. 6; 0 = the plain conditional model; default 3) "
                        "or the classifier scale s (Dhariwal & Nichol 2021; 1 = p(x|y) for an exact classifier; default 1)")


def execute(a) -> None:
    import torch

    from ..io import check_writable, npz_stream
    from ..plotting import check_grid_size
    from ..samplers import check_batch_fits
    from ..random import per_sample_generators
    from ..run import load, save_samples

    if a.num < 1:
        raise error(f"--num must be a positive integer, got {a.num}.")
    if a.batch_size < 1:
        raise error(f"--batch-size must be a positive integer, got {a.batch_size}.")
    if not a.out.endswith((".png", ".npz")):
        raise error(f"output file {a.out!r} must end in .png or .npz.")
    check_writable(a.out, "--out file")
    from ..ebm.run import is_ebm_run

    if is_ebm_run(a.run):
        return _sample_energy(a)
    run = load(a.run)
    sampler = a.sampler or run.config["sample"]["sampler"]
    options = {}
    if a.eta is not None:
        if sampler != "ddim":
            raise error(f"--eta applies to the ddim sampler, not {sampler!r}.")
        options["eta"] = a.eta
    if a.variance is not None:
        if sampler != "ddpm":
            raise error(f"--variance applies to the ddpm sampler, not {sampler!r}.")
        options["variance"] = a.variance
    options.update(parse_options(a.option))
    if a.prompts is not None and a.guidance is None:
        a.guidance = "cfg"  # prompts are guided by classifier-free guidance unless --guidance none
    if a.scale is not None and a.guidance in (None, "none"):
        raise error("--scale needs --guidance cfg or --guidance classifier.")
    if a.classifier is not None and a.guidance != "classifier":
        raise error("--classifier needs --guidance classifier.")
    if a.guidance == "classifier" and a.classifier is None:
        raise error("--guidance classifier needs --classifier DIR (a noise-aware classifier from difflab train-classifier).")
    default_scale = {"cfg": 3.0, "classifier": 1.0}.get(a.guidance)
    scale = (default_scale if a.scale is None else a.scale) if default_scale is not None else 0.0
    classifier = None
    if a.guidance == "classifier":
        from ..saved import load_classifier
        classifier = load_classifier(a.classifier)
    if a.compose and not a.classes:
        raise error("--compose needs --classes K1,K2.")
    shape = run.shape
    check_batch_fits(min(a.batch_size, a.num), run.codec.shape if run.codec is not None else shape)
    if a.out.endswith(".png"):
        check_grid_size(a.num)

    def batches():
        for lo in range(0, a.num, a.batch_size):
            n = min(a.batch_size, a.num - lo)
            gens = per_sample_generators(a.seed, lo, n, a.num)  # made per batch: memory follows the batch, not --num
            classes, prompts = a.classes, None
            if a.prompts is not None:
                prompts = [a.prompts[(lo + i) % len(a.prompts)] for i in range(n)]
            if classes and not a.compose:  # sample i gets classes[i % len], whatever the batch size
                classes = [a.classes[(lo + i) % len(a.classes)] for i in range(n)]
            yield run.sample(n, sampler=sampler, steps=a.steps, generator=gens, progress=not a.no_progress,
                             discretization=a.discretization, gaussian_start=a.gaussian_start, classes=classes,
                             guidance=a.guidance,
                             scale=scale, compose=a.compose, classifier=classifier, prompts=prompts, **options)

    if a.out.endswith(".npz"):  # streamed: one batch in memory at a time, the file complete or absent
        with npz_stream(a.out, "samples", (a.num, *shape)) as write:
            for x in batches():
                write(x.cpu().numpy())
    else:
        save_samples(torch.cat(list(batches())), a.out, run.kind)
    steps = run.config['sample']['steps'] if a.steps is None else a.steps
    print(f"wrote {a.num} samples ({sampler}, {steps} step{'' if steps == 1 else 's'}) to {a.out}")


def _sample_energy(a) -> None:
    """``difflab sample`` on an energy-based run: MCMC from uniform noise (``--sampler metropolis | langevin | mala |
    hmc``, ``gibbs`` for an RBM; ``--option step_size=...``, ``--option leapfrog_steps=...`` for hmc)."""
    import torch

    from ..ebm.run import load as load_energy
    from ..plotting import check_grid_size, save_samples

    for flag, value in (("--eta", a.eta), ("--variance", a.variance), ("--discretization", a.discretization),
                        ("--class", a.classes), ("--guidance", a.guidance), ("--prompt", a.prompts),
                        ("--scale", a.scale), ("--gaussian-start", a.gaussian_start)):
        if value is not None:
            raise error(f"{flag} applies to diffusion models; {a.run!r} is an energy-based run (sampled by MCMC).")
    run = load_energy(a.run)
    if a.out.endswith(".png"):
        check_grid_size(a.num)
    options = parse_options(a.option)
    step_size = options.pop("step_size", None)
    x = run.sample(a.num, sampler=a.sampler, steps=a.steps, step_size=step_size,
                   generator=torch.Generator().manual_seed(a.seed), **options)
    save_samples(x.cpu(), a.out, run.kind)
    sampler = a.sampler or run.config["sample"]["sampler"]
    rate = getattr(run, "last_acceptance", None)
    accepted = f", acceptance {rate:.2f}" if rate is not None and sampler in ("metropolis", "mala", "hmc") else ""
    what = "Gibbs sweeps" if sampler == "gibbs" else "noise levels" if sampler == "annealed-langevin" else "MCMC steps"
    print(f"wrote {a.num} samples ({sampler}, {run.config['sample']['steps'] if a.steps is None else a.steps} {what}"
          f"{accepted}) to {a.out}")
