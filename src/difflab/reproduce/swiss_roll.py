"""The swiss roll's forward trajectory and learned reverse trajectory (Sohl-Dickstein et al. 2015, Fig. 1).

The figure's three rows: the forward process q(x_t | x_0) carrying the roll to a Gaussian at t = 0, t_mid, T
(ᾱ = 0.9 at t_mid); the learned reverse process p_θ carrying the Gaussian back at t = T, t_mid, 0 (ancestral sampling, every step);
and the drift of the reverse process, μ_θ(x_t, t) − x_t, on a grid, at the same times. The paper used
T = 40 and a learned β schedule; here the 2-D MLP of the ``swissroll`` preset (linear β, T = 1000) stands in.
"""

from __future__ import annotations

import math

import torch

from .common import figure_path, preset, run_or_train, write_report


def spiral_distance(points: torch.Tensor, scale: float = 10.0, grid: int = 4000) -> torch.Tensor:
    """Each point's Euclidean distance to the noise-free roll (t cos t, t sin t) / 10, t ∈ [1.5π, 4.5π],
    by a dense search over the curve: how far a sample lies from the data manifold."""
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, grid, dtype=torch.float64)
    curve = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / scale
    return torch.cdist(points.double(), curve).min(1).values


def drift(run, points: torch.Tensor, t: int) -> torch.Tensor:
    """μ_θ(x_t, t) − x_t in data units: the posterior mean of q(x_{t−1} | x_t, x̂_0) (DDPM Eq. 7) minus x_t."""
    from ..process import q_posterior

    z = run.normalization.to_model(points)
    tt = torch.full((z.shape[0],), t)
    with torch.no_grad():
        pred = run.denoiser(z, tt)
    mean, _ = q_posterior(run.schedule, pred.x0, z, tt)
    return (mean - z) * run.normalization.scale


def main(ctx):
    from .. import plotting
    from ..data import load_dataset
    from ..process import q_sample

    run, reused = run_or_train(ctx, "swissroll", preset("swissroll", train={"sample_every": 0}),
                               steps=300 if ctx.quick else 10000)
    T = run.schedule.T
    # the middle column where the roll is blurred but still visible (ᾱ_t = 0.9), as at T/2 of the paper's schedule
    mid = int((run.schedule.alpha_bar - 0.9).abs().argmin())
    times = [0, mid, T]
    n = 2000
    data = load_dataset("swissroll", num=n, split="test").data[:n]
    gen = torch.Generator().manual_seed(0)
    x0 = run.normalization.to_model(data)
    forward = [data] + [run.normalization.to_data(q_sample(run.schedule, x0, torch.full((n,), t),
                                                           torch.randn(x0.shape, generator=gen))) for t in times[1:]]
    record = {}
    samples = run.sample(n, sampler="ddpm", steps=T, generator=torch.Generator().manual_seed(1),
                         callback=lambda i, t, x, pred: record.__setitem__(int(t), x.clone()))
    reverse = [run.normalization.to_data(record[T]), run.normalization.to_data(record[mid]), samples]

    lim = 2.0
    g = torch.linspace(-1.6, 1.6, 17)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    fig = plotting._figure(9.5, 9.5)
    axes = fig.subplots(3, 3)
    for j, t in enumerate(times):
        for row, frames, label in ((0, forward, "q(x_t)"), (1, reverse[::-1], "p_θ(x_t)")):
            ax = axes[row, j]
            ax.scatter(*frames[j].T.numpy(), s=1.5, alpha=0.5, color="C0" if row == 0 else "C1")
            ax.set_title(f"{label}, t = {t}", fontsize=9)
        ax = axes[2, j]
        d = drift(run, grid, max(t, 1))
        ax.quiver(*grid.T.numpy(), *d.T.numpy(), color="C3", angles="xy")
        ax.set_title(f"drift μ_θ(x_t, t) − x_t, t = {max(t, 1)}", fontsize=9)
        for ax in axes[:, j]:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    fig.suptitle("Swiss roll: forward trajectory (top), learned reverse trajectory (middle), reverse drift (bottom)")
    plotting._save_figure(fig, figure_path(ctx))

    prior = run.normalization.to_data(torch.randn(n, 2, generator=gen))
    rows = [("test data", data), ("model samples (ddpm, all T steps)", samples), ("the Gaussian the reverse process starts from", prior)]
    lines = [f"Model: `{run.path}` ({'reused' if reused else 'trained here'}): the `swissroll` preset, a 3-layer MLP, "
             f"linear β, T = {T}, {run.step} training steps. {n} points per row.", "",
             "| points | mean distance to the noise-free roll | 90th percentile |", "|---|---|---|"]
    for label, pts in rows:
        dist = spiral_distance(pts)
        lines.append(f"| {label} | {float(dist.mean()):.3f} | {float(dist.quantile(0.9)):.3f} |")
    lines += ["", f"![forward and reverse trajectories]({figure_path(ctx).name})", "",
              "## Against the paper", "",
              "Sohl-Dickstein et al.'s Fig. 1 shows the roll dissolving into an isotropic Gaussian under the forward "
              "process, the learned reverse process rebuilding it, and a drift field that points towards the roll at "
              "intermediate times. The table measures the second claim: samples lie as close to the roll as the "
              "test data do when the model has learned it (the data carry noise of standard deviation 0.1 around "
              "the curve), and the Gaussian start lies far from it. The picture is read in the text of "
              "docs/results/README.md."]
    return write_report(ctx, "The swiss roll, forward and reverse (Sohl-Dickstein et al. 2015, Fig. 1)", lines)
