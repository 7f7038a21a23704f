"""``difflab demo``: train on the swiss roll and on scikit-learn digits, then draw what happened.

For each dataset it writes the samples, the forward process (a data batch noised over t), the
reverse process (x_t and the predicted x_0 over the sampling steps) and the loss curve; plus the
schedules picture. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..errors import DifflabError

QUICK_STEPS = {"swissroll": 300, "digits": 200}
SHOWN_T = (0, 50, 100, 200, 400, 700, 1000)


def _forward_picture(run, dataset, path: Path) -> None:
    """x_t ~ q(x_t | x_0) for one data batch at several t (DDPM Eq. 4)."""
    from .. import plotting, process

    gen = torch.Generator().manual_seed(0)
    n = 2000 if run.kind == "toy" else 8
    x0 = run.normalization.to_model(dataset.data[:n])
    frames = []
    for t in SHOWN_T:
        if t == 0:
            frames.append(x0)
            continue
        noise = torch.randn(x0.shape, generator=gen)
        frames.append(process.q_sample(run.schedule, x0, torch.full((n,), t), noise))
    labels = [f"t = {t}" for t in SHOWN_T]
    if run.kind == "toy":
        plotting.plot_process_toy([run.normalization.to_data(f) for f in frames], labels, path,
                                  title="forward process q(x_t | x_0)")
    else:  # show model coordinates mapped to [0, 1] without clipping the noise away
        rows = [[((f[i] + 1) / 2).clamp(0, 1) for f in frames] for i in range(n)]
        plotting.plot_process_images(rows, [f"#{i}" for i in range(n)], labels, path, title="forward process q(x_t | x_0)")


def _reverse_picture(run, path: Path, steps: int = 50) -> None:
    """x_t and the denoiser's x̂_0 along a DDIM run, at a few of its steps."""
    from .. import plotting

    n = 2000 if run.kind == "toy" else 6
    record: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    run.sample(n, sampler="ddim", steps=steps, generator=torch.Generator().manual_seed(1),
               callback=lambda i, t, x, pred: record.__setitem__(t, (x.clone(), pred.x0.clone())))
    ts = sorted(record, reverse=True)
    # most of the picture forms late: show the start, then ever closer to the data
    shown = sorted({min(ts, key=lambda t: abs(t - f * ts[0])) for f in (1.0, 0.5, 0.25, 0.12, 0.05, 0.0)}, reverse=True)
    to_data = run.normalization.to_data
    if run.kind == "toy":
        frames = [to_data(record[t][0]) for t in shown] + [to_data(record[t][1]) for t in shown]
        labels = [f"x_t, t={t}" for t in shown] + [f"x̂_0 at t={t}" for t in shown]
        k = len(shown)
        # x̂_0 at the noisiest steps can be far off (it divides by a tiny α_t): frame the data, not the outliers
        data = frames[-1]
        lim = float(data.abs().max()) * 1.8
        plotting.plot_process_toy(frames[:k], labels[:k], path, title="reverse process (DDIM, 50 steps): x_t")
        plotting.plot_process_toy(frames[k:], labels[k:], path.with_name(path.stem + "_x0.png"),
                                  title="reverse process: predicted x̂_0", lim=lim)
    else:
        rows = []
        for i in range(n):
            rows.append([((record[t][0][i] + 1) / 2).clamp(0, 1) for t in shown])
            rows.append([to_data(record[t][1][i:i + 1])[0] for t in shown])
        row_labels = [lab for i in range(n) for lab in (f"x_t #{i}", f"x̂_0 #{i}")]
        plotting.plot_process_images(rows, row_labels, [f"t = {t}" for t in shown], path,
                                     title="reverse process (DDIM, 50 steps): x_t and predicted x̂_0")


def run_demo(out: str | Path = "demo_out", quick: bool = False) -> None:
    from .. import plotting, schedules
    from ..config import resolve
    from ..data import load_dataset
    from ..run import load, save_samples
    from ..training.diffusion import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / ".difflab-demo").exists():
            raise DifflabError(f"demo output directory {str(out)!r} exists and is not a difflab demo directory; choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    (out / ".difflab-demo").touch()
    t_start = time.perf_counter()
    written = []

    curves = {name: schedules.get(name, 1000).alpha_bar.numpy() for name in schedules.names()}
    written.append(plotting.plot_schedules(curves, out / "schedules.png"))

    for name in ("swissroll", "digits"):
        config = resolve(name)
        run_dir = out / name / "run"
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
        print(f"\n== {name}: training ({'quick' if quick else 'preset'} settings) ==")
        train(config, run_dir, steps=QUICK_STEPS[name] if quick else None)
        run = load(run_dir)
        dataset = load_dataset(name, num=2000 if run.kind == "toy" else None)
        num = 2000 if run.kind == "toy" else 100
        samples = run.sample(num, sampler="ddim", steps=50, generator=torch.Generator().manual_seed(0))
        written.append(save_samples(samples, out / name / "samples.png", run.kind,
                                    reference=dataset.data if run.kind == "toy" else None))
        if run.kind == "image":
            written.append(save_samples(dataset.data[:100], out / name / "real.png", run.kind))
        forward = out / name / "forward_process.png"
        _forward_picture(run, dataset, forward)
        reverse = out / name / "reverse_process.png"
        _reverse_picture(run, reverse)
        written += [forward, reverse]
        if run.kind == "toy":
            written.append(reverse.with_name("reverse_process_x0.png"))
        loss = plotting.plot_loss_curves_from_csv(run_dir / "log.csv", out / name / "loss.png", title=f"{name}: L_simple")
        written.append(loss)

    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f}s; pictures:")
    for path in written:
        print(f"  {path}")


NAME = "demo"
HELP = "train on the swiss roll and on digits, and draw the pictures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    p.add_argument("--quick", action="store_true", help="a few hundred steps each: checks the pipeline, not quality")


def execute(a) -> None:
    run_demo(a.out, quick=a.quick)
