"""The classic energy-based models of the score-based lecture's first third, run and measured: a restricted
Boltzmann machine on binarised MNIST (persistent CD, block Gibbs samples, log-likelihood by annealed importance
sampling), an energy conv net on 8×8 digits (short-run samples), Ising-model denoising of a binary image (ICM and Gibbs sampling; Bishop 2006, Sec. 8.3.3), and a product
of experts (AND) against a mixture (OR) of two energies on a toy (Hinton 2002).
"""

from __future__ import annotations

import math

import torch

from .common import figure_path, write_report


def _rbm_section(ctx, lines: list[str]) -> None:
    import json

    from .. import checkpoint, plotting
    from ..data import load_dataset
    from ..ebm.run import load
    from ..training.ebm import resolve, train_ebm

    path = ctx.runs / "mnist-rbm"
    if not checkpoint.list_checkpoints(path):
        train_ebm(resolve("mnist-rbm"), path, steps=300 if ctx.quick else None, seed=0)
    run = load(path)
    result = json.loads((path / "eval.json").read_text())
    train = (load_dataset("mnist", num=10000).data > 0.5).double().flatten(1)
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    test = (load_dataset("mnist", num=result["num"], split="test").data > 0.5).double().flatten(1)
    independent = float((test * p.log() + (1 - test) * (1 - p).log()).sum(1).mean())
    x = run.sample(64, generator=torch.Generator().manual_seed(0))
    plotting.save_image_grid(x, figure_path(ctx, "_rbm"), nrow=8)
    lines += ["## A restricted Boltzmann machine on binarised MNIST", "",
              f"`mnist-rbm`: 784 visible, {run.config['model']['hidden']} hidden units, persistent CD with one Gibbs sweep "
              f"per step (Tieleman 2008), {run.config['train']['steps']} steps of batch {run.config['train']['batch_size']}. "
              f"Held-out log-likelihood on {result['num']} test images, log Z by AIS ({result['ais']['chains']} chains, "
              f"{result['ais']['betas']} temperatures, base: the data's pixel rates; Salakhutdinov & Murray 2008):", "",
              "| model | log-likelihood, nats per image |", "|---|---|",
              f"| independent pixels (each a Bernoulli at its training rate) | {independent:.1f} |",
              f"| RBM | {result['log_likelihood_nats']:.1f} (log Z = {result['log_z_ais']:.2f} ± {result['log_z_se']:.2f}) |",
              "", "Salakhutdinov & Murray report about −86 nats for 500 hidden units trained by CD-25; a small RBM trained "
              "for a minute lands between that and the independent-pixel baseline. AIS agrees with exact enumeration "
              "on RBMs small enough to enumerate (tests/test_rbm.py).", "",
              "The samples below are 64 chains of 1,000 block Gibbs sweeps from uniform noise: most settle on the same "
              "few digit shapes, because block Gibbs sampling crosses between the modes of a sharp RBM very slowly "
              "(the reason Tieleman's persistent chains and parallel tempering exist); the likelihood above is the "
              "model's, not its sampler's.", "",
              f"![RBM samples, 1,000 Gibbs sweeps from noise]({figure_path(ctx, '_rbm').name})", ""]


def _digits_section(ctx, lines: list[str]) -> None:
    from .. import checkpoint, plotting
    from ..ebm.run import load
    from ..training.ebm import resolve, train_ebm

    path = ctx.runs / "digits-ebm"
    if not checkpoint.list_checkpoints(path):
        train_ebm(resolve("digits-ebm"), path, steps=100 if ctx.quick else None, seed=0)
    run = load(path)
    rows = []
    for steps in (40, 200, 1000):
        rows.append(run.sample(8, sampler="short-run", steps=steps, generator=torch.Generator().manual_seed(0)))
    plotting.save_image_grid(torch.cat(rows), figure_path(ctx, "_digits"), nrow=8)
    e = run.config["ebm"]
    lines += ["## An energy conv net on 8×8 digits", "",
              f"`digits-ebm`: contrastive divergence with {e['buffer']} persistent chains of {e['chain_steps']} steps "
              f"x ← x − τ∇E + s z (τ = {e['step_size']}, s = {e['noise_scale']}, images clamped to [−1, 1]; the small-noise "
              f"chains of Du & Mordatch 2019), {run.config['train']['steps']} steps. Samples by the same chain from "
              "uniform noise after 40 (the training chains' length), 200 and 1,000 steps (rows). Short-run samples "
              "need the chain they were trained with: Langevin's own noise √(2τ) = 0.3 per step leaves pure noise.", "",
              f"![digits EBM samples after 40, 200, 1000 steps]({figure_path(ctx, '_digits').name})", ""]


def _ising_section(ctx, lines: list[str]) -> None:
    from .. import plotting
    from ..ebm import ising

    n = 64
    r, c = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    x = torch.where(((r - 26) ** 2 + (c - 24) ** 2 < 18**2) | ((r > 40) & (c > 38) & (c < 58)), 1.0, -1.0).double()
    g = torch.Generator().manual_seed(0)
    y = ising.corrupt(x, 0.1, g)
    icm = ising.denoise(y)
    chains = torch.stack([ising.denoise(y, sweeps=30, method="gibbs", generator=g) for _ in range(20)])
    gibbs_mean = chains.mean(0)
    gibbs_map = torch.where(gibbs_mean >= 0, 1.0, -1.0)
    images = [x, y, icm, gibbs_mean]
    plotting.save_image_grid(torch.stack([(im[None] + 1) / 2 for im in images]), figure_path(ctx, "_ising"), nrow=4)
    err = lambda im: float((im != x).double().mean())  # noqa: E731
    lines += ["## Denoising a binary image with an Ising model", "",
              "E(x, y) = h Σ x_i − β Σ x_i x_j − η Σ x_i y_i with Bishop's β = 1, η = 2.1, h = 0 (Bishop 2006, Eq. 8.42); "
              "10% of the pixels flipped.", "", "| image | pixels wrong |", "|---|---|",
              f"| corrupted | {err(y):.3f} |", f"| ICM, 10 sweeps | {err(icm):.3f} |",
              f"| Gibbs sampling, sign of the mean of 20 chains × 30 sweeps | {err(gibbs_map):.3f} |", "",
              "Bishop's Fig. 8.30 reports about 4% wrong after ICM from 10% noise on his image.", "",
              f"![original, corrupted, ICM, Gibbs mean]({figure_path(ctx, '_ising').name})", ""]


def _experts_section(ctx, lines: list[str]) -> None:
    from .. import plotting
    from ..ebm import mcmc
    from ..ebm.products import mixture, product
    from ..toy import GaussianMixture

    ring = GaussianMixture([[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)], 0.25)
    half = lambda x: -0.5 * ((x[:, 0] - 1.0) / 0.8) ** 2 - math.log(0.8 * math.sqrt(2 * math.pi))  # noqa: E731
    band = lambda x: half(x) + 0.0 * x[:, 1] - 0.5 * (x[:, 1] / 4.0) ** 2 - math.log(4.0 * math.sqrt(2 * math.pi))  # noqa: E731
    g = torch.Generator().manual_seed(0)
    start = -4 + 8 * torch.rand(4000, 2, generator=g, dtype=torch.float64)
    draws = {}
    for label, lp in (("expert 1: ring of 8 Gaussians", ring.log_prob), ("expert 2: x ~ N(1, 0.8²)", band),
                      ("product (AND): E₁ + E₂", product(ring.log_prob, band)),
                      ("mixture (OR): ½ p₁ + ½ p₂", mixture(ring.log_prob, band))):
        draws[label] = mcmc.hmc(lp, start, 300, 0.15, generator=g, leapfrog_steps=10)
    fig = plotting._figure(14, 3.8)
    axes = fig.subplots(1, 4)
    for ax, (label, chain) in zip(axes, draws.items()):
        ax.scatter(*chain.samples.T.numpy(), s=1, alpha=0.3)
        ax.set_title(f"{label}\nHMC acceptance {chain.acceptance:.2f}", fontsize=9)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
    plotting._save_figure(fig, figure_path(ctx, "_experts"))
    prod = draws["product (AND): E₁ + E₂"].samples
    right = float((prod[:, 0] > 0).double().mean())
    lines += ["## Products of experts (AND) against mixtures (OR)", "",
              "Two energies, a ring of eight Gaussians and a broad band around x = 1, sampled by HMC (300 steps of 10 "
              f"leapfrog steps from uniform starts). The product keeps only the ring's modes the band allows: "
              f"{right:.2f} of its samples have x > 0; the mixture keeps everything either expert allows.", "",
              f"![experts, product and mixture]({figure_path(ctx, '_experts').name})", ""]


def main(ctx):
    lines: list[str] = []
    _rbm_section(ctx, lines)
    _digits_section(ctx, lines)
    _ising_section(ctx, lines)
    _experts_section(ctx, lines)
    return write_report(ctx, "Energy-based models of the lecture: RBM, Ising denoising, products of experts", lines)
