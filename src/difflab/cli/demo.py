"""``difflab demo``: the shipped models at their best few-step settings, guidance, the denoising as it happens,
and a toy trained from scratch, on one page.

What a newcomer should see first, in under three minutes on two CPU cores and with nothing downloaded:

* ``mnist_samples.png`` and ``fashion-mnist_samples.png``: the shipped models with the plain ``difflab sample
  NAME`` setting recorded with each model;
* ``mnist-fast_samples.png``: the shipped ``mnist`` progressively distilled to 2 network evaluations;
* ``mnist_steps.png``: the same noises at 2, 4, 10 and 50 network evaluations (UniPC from the data's Gaussian);
* ``mnist_guidance.png``: classifier-free guidance (Ho & Salimans 2022) towards each class at scales 0, 1 and 3;
* ``mnist_denoising.gif``: x_t and the predicted x̂_0 along a sampling run (Ho et al. 2020, Fig. 6);
* ``toy_*.png``: a flow-matching model trained here on 8 Gaussians, its samples, its forward and reverse
  processes and its loss;
* ``index.html``: all of it with captions.
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path

import torch

from ..errors import DifflabError

TOY = "8gaussians-flow"
TOY_STEPS = 5000
STEP_BUDGETS = (2, 4, 10, 50)
GUIDANCE_SCALES = (0.0, 1.0, 3.0)
FEW_STEP = {"sampler": "unipc", "steps": 10}


def _check_out(out: Path) -> None:
    """Refuse an output folder that holds anything but an earlier demo's pictures, before any work."""
    if out.exists() and not out.is_dir():
        raise DifflabError(f"demo output {str(out)!r} is a file, not a directory; choose another --out.")
    if out.exists() and any(out.iterdir()) and not (out / ".difflab-demo").exists():
        raise DifflabError(f"demo output directory {str(out)!r} exists and is not a difflab demo directory; "
                           "choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".difflab-demo").touch()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _default_setting(run) -> str:
    s = run.config["sample"]
    start = f" from the Gaussian start σ̃ = {s['gaussian_start']:g}" if s.get("gaussian_start") else ""
    return f"{s['sampler'].upper()} {s['steps']} steps{start}"


def shipped_samples(name: str, out: Path, num: int, about: str = "") -> tuple[Path, str]:
    """``num`` samples of a shipped model with the setting recorded with it (what ``difflab sample NAME`` draws)."""
    from ..run import load, save_samples

    run = load(name)
    t0 = time.perf_counter()
    x = run.sample(num, generator=_seeded(0))
    seconds = time.perf_counter() - t0
    path = save_samples(x, out / f"{name}_samples.png", run.kind)
    return path, (f"<code>difflab sample {name}</code>: {num} samples with the setting recorded with the model "
                  f"({_default_setting(run)}), drawn in {seconds:.1f} s.{' ' + about if about else ''}")


def step_budgets(run, out: Path, num: int, budgets=STEP_BUDGETS) -> tuple[Path, str]:
    """The same ``num`` noises at each network-evaluation budget: UniPC (Zhao et al. 2023) from the data's Gaussian."""
    from .. import plotting

    gaussian_start = run.config["sample"].get("gaussian_start") or None
    rows = []
    for steps in budgets:
        x = run.sample(num, sampler=FEW_STEP["sampler"], steps=steps, generator=_seeded(1),
                       gaussian_start=gaussian_start)
        rows.append(list(x))
    path = plotting.plot_process_images(rows, [f"{n} evaluations" for n in budgets], None, out / "mnist_steps.png",
                                        title="the same noises, UniPC from the data's Gaussian")
    return path, (f"Few steps: each column starts from the same noise, each row spends another number of network "
                  f"evaluations (UniPC{f' from the Gaussian start σ̃ = {gaussian_start:g}' if gaussian_start else ''}). "
                  f"<code>difflab sample mnist --sampler unipc --steps 10 --gaussian-start 5</code>.")


def guidance_grid(run, out: Path, per_class: int, scales=GUIDANCE_SCALES) -> tuple[Path, str]:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6) towards each class, at each scale w, same noises."""
    from .. import plotting

    classes = list(range(10))
    gaussian_start = run.config["sample"].get("gaussian_start") or None
    rows, labels = [], []
    for w in scales:
        x = run.sample(10 * per_class, classes=classes, guidance="cfg", scale=w, generator=_seeded(2),
                       gaussian_start=gaussian_start, **FEW_STEP)
        for k in range(per_class):
            rows.append(list(x[10 * k:10 * (k + 1)]))
            labels.append(f"w = {w:g}")
    path = plotting.plot_process_images(rows, labels, [str(c) for c in classes], out / "mnist_guidance.png",
                                        title="classifier-free guidance towards each class")
    start = f" --gaussian-start {gaussian_start:g}" if gaussian_start else ""
    return path, ("Guidance: column k is asked for the digit k; w = 0 is the plain conditional model, a larger w "
                  "trades variety for fidelity (UniPC, 10 steps, from the data's Gaussian: at w = 3 the judge names "
                  "99.8% of such samples as the class asked for, benchmarks/results/guidance_gaussian_start.md). "
                  f"<code>difflab sample mnist --class 7 --guidance cfg --scale 3 --sampler unipc --steps 10"
                  f"{start}</code>.")


def denoising_animation(run, out: Path, num: int) -> tuple[Path, Path, str]:
    """x_t (top row) and x̂_0 (bottom row) along the model's own sampling run: a GIF and a PNG strip."""
    from ..tasks import trajectory

    s = run.config["sample"]
    traj = trajectory.record(run.denoiser, (num, *run.shape), sampler=s["sampler"], steps=s["steps"],
                             generator=_seeded(3), **run.gaussian_options(s["sampler"]))
    gif, png = out / "mnist_denoising.gif", out / "mnist_denoising.png"
    trajectory.save_animation(traj, gif, run.normalization.to_data)
    trajectory.save_grid(traj, png, run.normalization.to_data, count=8)
    return gif, png, ("Denoising as it happens: the top row is x_t, the bottom row the network's guess of the final "
                      "image x̂_0 at that step. <code>difflab trajectory mnist --gif run.gif --out run.png</code>.")


def toy_from_scratch(out: Path, steps: int) -> list[tuple[Path, str]]:
    """Train the flow-matching toy for ``steps`` steps here, then draw its samples, processes and loss."""
    import shutil

    from .. import plotting
    from ..config import resolve
    from ..data import load_dataset
    from ..run import load, save_samples
    from ..training.diffusion import train

    run_dir = out / "toy_run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    train(resolve(TOY), run_dir, steps=steps)
    seconds = time.perf_counter() - t0
    run = load(run_dir)
    data = load_dataset("8gaussians", num=2000).data
    samples = save_samples(run.sample(2000, generator=_seeded(0)), out / "toy_samples.png", "toy", reference=data)
    forward, reverse = out / "toy_forward_process.png", out / "toy_reverse_process.png"
    _toy_forward(run, data, forward)
    _toy_reverse(run, reverse)
    loss = plotting.plot_loss_curves_from_csv(run_dir / "log.csv", out / "toy_loss.png", title="flow matching loss")
    cmd = f"<code>difflab train {TOY} --out runs/toy --steps {steps}</code>"
    return [(samples, f"A toy trained from scratch here in {seconds:.0f} s ({cmd}): 2,000 samples (blue) over the "
                      f"data (grey), {run.config['sample']['steps']} Euler steps of the flow."),
            (forward, "The forward process: the straight path x_t = (1 − t) x_0 + t ε carries data to noise."),
            (reverse, "The reverse process: the learned velocity carries noise back to the eight modes."),
            (loss, "Its training loss.")]


def _toy_forward(run, data: torch.Tensor, path: Path, shown=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> None:
    """x_t = α_t x_0 + σ_t ε for one data batch at several t (the run's schedule)."""
    from .. import plotting, process

    x0 = run.normalization.to_model(data)
    gen = _seeded(4)
    frames = []
    for f in shown:
        t = f * run.schedule.t_max if not run.schedule.discrete else round(f * run.schedule.T)
        if f == 0:
            frames.append(x0)
            continue
        noise = torch.randn(x0.shape, generator=gen)
        frames.append(process.q_sample(run.schedule, x0, torch.full((x0.shape[0],), t), noise))
    plotting.plot_process_toy([run.normalization.to_data(x) for x in frames], [f"t = {f:g}" for f in shown], path,
                              title="forward process")


def _toy_reverse(run, path: Path, num: int = 2000) -> None:
    """x_t along the model's own sampling run, at six of its steps."""
    from .. import plotting

    record: dict[float, torch.Tensor] = {}
    final = run.sample(num, generator=_seeded(5),
                       callback=lambda i, t, x, pred: record.__setitem__(float(t), run.normalization.to_data(x)))
    ts = sorted(record, reverse=True)
    picks = sorted({min(ts, key=lambda t: abs(t - f * ts[0])) for f in (1.0, 0.6, 0.4, 0.25, 0.1)}, reverse=True)
    plotting.plot_process_toy([record[t] for t in picks] + [final], [f"t = {t:.2f}" for t in picks] + ["t = 0"], path,
                              title="reverse process")


def _write_index(out: Path, items: list[tuple[Path, str]], seconds: float) -> Path:
    from ..io import write_text

    figures = "\n".join(f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}">'
                        f"<figcaption>{caption}</figcaption></figure>" for p, caption in items)
    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>difflab demo</title>\n"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}"
            f"figure{{margin:2em 0}}img{{max-width:100%;image-rendering:pixelated}}"
            f"figcaption{{color:#333;margin-top:.5em}}</style></head><body>\n"
            f"<h1>difflab demo</h1>\n<p>Drawn on this machine's CPU in {seconds:.0f} s; nothing was downloaded.</p>\n"
            f"{figures}\n<h2>Next</h2>\n<ul><li><code>difflab train digits --out runs/digits</code>: a model of your own "
            f"(8×8 digits, a few minutes)</li><li><code>difflab app</code>: sample, edit and compare in the browser</li>"
            f"<li><code>difflab samplers</code>: every sampler, its order and cost</li></ul>\n</body></html>\n")
    path = out / "index.html"
    write_text(path, page)
    return path


def run_demo(out: str | Path = "demo_out", quick: bool = False) -> list[Path]:
    """Draw every picture into ``out`` and return their paths, ``index.html`` last. ``quick``: fewer samples and
    toy steps (checks the pipeline, not quality)."""
    from ..run import load

    out = Path(out)
    _check_out(out)
    t_start = time.perf_counter()
    items: list[tuple[Path, str]] = []

    def step(title: str) -> None:
        print(f"== {title} ({time.perf_counter() - t_start:.0f} s) ==", flush=True)

    step("the shipped MNIST model")
    items.append(shipped_samples("mnist", out, 16 if quick else 100))
    step("the shipped MNIST model distilled to two evaluations")
    items.append(shipped_samples("mnist-fast", out, 16 if quick else 100,
                                 "The same model progressively distilled (Salimans &amp; Ho 2022) from 64 DDIM steps to "
                                 "2; quality against the teacher in src/difflab/weights/mnist-fast/TRAINING.md."))
    mnist = load("mnist")
    items.append(step_budgets(mnist, out, 4 if quick else 10, (2, 4) if quick else STEP_BUDGETS))
    step("guidance")
    items.append(guidance_grid(mnist, out, 1 if quick else 2, (0.0, 3.0) if quick else GUIDANCE_SCALES))
    step("the denoising, frame by frame")
    gif, strip, caption = denoising_animation(mnist, out, 4 if quick else 8)
    items += [(gif, caption), (strip, "The same run as a strip: x_t rows, then x̂_0 rows.")]
    step("the shipped Fashion-MNIST model")
    items.append(shipped_samples("fashion-mnist", out, 16 if quick else 64))
    step("a toy trained from scratch")
    items += toy_from_scratch(out, 200 if quick else TOY_STEPS)
    seconds = time.perf_counter() - t_start
    index = _write_index(out, items, seconds)
    print(f"\ndemo finished in {seconds:.0f} s; open {index} or look at:")
    for path, _ in items:
        print(f"  {path}")
    return [p for p, _ in items] + [index]


NAME = "demo"
HELP = "the shipped models at their best settings, guidance, the denoising as a GIF and a toy trained here"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out); index.html shows it all")
    p.add_argument("--quick", action="store_true", help="a few samples and 200 toy steps: checks the pipeline, not quality")


def execute(a) -> None:
    run_demo(a.out, quick=a.quick)
