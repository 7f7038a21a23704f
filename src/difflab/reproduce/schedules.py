"""Linear vs cosine noise schedule: the ᾱ_t curves and sample quality at equal training (Nichol & Dhariwal 2021, Sec. 3.2, Fig. 3 and 5).

Digits (or, with ``--dataset mnist``, MNIST: the ``mnist`` preset's U-Net, 1,000 samples per cell) ε-models identical
but for the schedule — DDPM's linear β_t (Ho et al. 2020) and the cosine ᾱ_t of IDDPM
Eq. 17 — trained on the digits train split, three training seeds each, and measured at two training lengths (the
same runs continued), so that "undertrained" is tested rather than assumed. Per seed: FD of DDIM (η = 0) samples at
several step counts and of ancestral sampling with 100 steps against the 450 held-out test digits, and the
variational bound in bits/dim of held-out test digits. Verdicts: :mod:`difflab.reproduce.claims`.
"""

from __future__ import annotations

import torch

from .claims import Claim, claim_table, mean_sd
from .common import Measures, draw, figure_path, floor_band, floors, preset, run_or_train, scores, store_claims, write_report

STEPS = (10, 20, 50, 100)
DDPM_STEPS = 100  # ancestral sampling respaced to 100 steps with β̃
LENGTHS = {"digits": (1000, 4000), "mnist": (5000, 20000)}  # training steps: the verdicts at both (MNIST: the preset's)
PAPER = "Nichol & Dhariwal 2021, Sec. 3.2"
SCHEDULES = ("linear", "cosine")


def near_noise_fraction(schedule, threshold: float = 1e-3) -> float:
    """The share of the T steps whose ᾱ_t lies below ``threshold``: steps spent on (almost) pure noise, which IDDPM
    Sec. 3.2 finds wasted by the linear schedule."""
    ab = schedule.alpha_bar[1:]
    return float((ab < threshold).double().mean())


def measure(ctx, run, num: int, num_bound: int, steps) -> dict:
    from ..data import load_dataset

    r, data = {}, ctx.dataset
    for s in steps:
        r[f"ddim-{s}"] = scores(draw(run, num, sampler="ddim", steps=s, eta=0.0), data, num, "fd")["fd"]
    r["ddpm"] = scores(draw(run, num, sampler="ddpm", steps=DDPM_STEPS), data, num, "fd")["fd"]
    test = load_dataset(data, split="test").data[:num_bound]
    bound = run.variational_bound(test, generator=torch.Generator().manual_seed(0))["total_bpd"]
    r["bpd"] = float(bound.mean())
    print(f"[{ctx.name}] {run.path} step {run.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    return r


def claims_at(m: dict, length: int, seeds, steps, floor: dict, dataset: str = "digits") -> list[Claim]:
    def vals(label, key):
        return tuple(m[f"{label}-s{seed}-{length}"][key] for seed in seeds)

    fd = dict(metric=f"FD[{dataset}-classifier]", floor=floor["mean"], floor_sd=floor["sd"])
    out = [Claim(f"cosine samples better with DDIM-{s} ({length} training steps)", PAPER, a="linear", b="cosine",
                 claimed="negative", a_values=vals("linear", f"ddim-{s}"), b_values=vals("cosine", f"ddim-{s}"),
                 seeds=tuple(seeds), **fd) for s in (steps[0], steps[-1])]
    out.append(Claim(f"cosine samples better with DDPM-{DDPM_STEPS} ({length} training steps)", PAPER, a="linear",
                     b="cosine", claimed="negative", a_values=vals("linear", "ddpm"), b_values=vals("cosine", "ddpm"),
                     seeds=tuple(seeds), **fd))
    out.append(Claim(f"cosine has the lower bound, bits/dim ({length} training steps)", PAPER, metric="bits/dim",
                     a="linear", b="cosine", claimed="negative", a_values=vals("linear", "bpd"),
                     b_values=vals("cosine", "bpd"), seeds=tuple(seeds)))
    return out


def main(ctx):
    from .. import plotting

    seeds = ctx.seeds
    from ..evaluate import split_size

    data = ctx.dataset
    lengths = (60, 120) if ctx.quick else LENGTHS[data]
    num = ctx.num
    num_bound = 16 if ctx.quick else 200
    steps = STEPS[:2] if ctx.quick else STEPS
    measures = Measures(ctx)
    floor = measures.get(f"floors-{num}", lambda: floors(data, num))["fd"]
    for length in lengths:  # every run reaches the first length before any goes on to the second
        for label in SCHEDULES:
            cfg = preset(data, diffusion={"schedule": label, "loss": "simple"}, model={"num_classes": None},
                         train={"sample_every": 0})
            for seed in seeds:
                key = f"{label}-s{seed}-{length}"
                if key in measures.values:
                    continue
                run, _ = run_or_train(ctx, f"{data}-{label}-s{seed}", cfg, steps=length, seed=seed)
                measures.get(key, lambda: measure(ctx, run, num, num_bound, steps))
    m = measures.values
    claims = [c for length in lengths for c in claims_at(m, length, seeds, steps, floor, data)]
    judge = f"FD[{data}-classifier]"
    batch = preset(data)["train"]["batch_size"]

    from ..schedules import get
    schedules = {label: get(label, 1000) for label in SCHEDULES}
    fig = plotting._figure(13, 3.8)
    a1, a2, a3 = fig.subplots(1, 3)
    for i, label in enumerate(SCHEDULES):
        sch = schedules[label]
        u = torch.arange(sch.T + 1) / sch.T
        a1.plot(u, sch.alpha_bar, color=f"C{i}", label=label)
        a2.plot(u[1:], torch.log(sch.alpha_bar[1:] / (1 - sch.alpha_bar[1:])), color=f"C{i}", label=label)
        for length, style in zip(lengths, ("--", "-")):
            ms = [mean_sd(m[f"{label}-s{seed}-{length}"][f"ddim-{s}"] for seed in seeds) for s in steps]
            a3.errorbar(steps, [x for x, _ in ms], yerr=[e for _, e in ms], color=f"C{i}", linestyle=style, marker="o",
                        capsize=2, label=f"{label}, {length} training steps")
    floor_band(a3, floor)
    a1.set(xlabel="t / T", ylabel="ᾱ_t", title="ᾱ_t (IDDPM Fig. 5)")
    a2.set(xlabel="t / T", ylabel="λ_t", title="log-SNR λ_t = log ᾱ_t / (1 − ᾱ_t)")
    a3.set(xlabel="DDIM steps (η = 0)", ylabel=f"{judge}, mean ± sd over seeds",
           title=f"FD of {num} samples vs {num} held-out {data} images", xscale="log")
    a3.set_xticks(steps, [str(s) for s in steps])
    for ax in (a1, a2, a3):
        ax.legend(fontsize=7)
    plotting._save_figure(fig, figure_path(ctx))

    lines = [f"Runs: `{ctx.runs}/{data}-{{linear,cosine}}-s{{{','.join(map(str, seeds))}}}`: the `{data}` preset's "
             f"U-Net, unconditional, L_simple, batch {batch}, trained on the {split_size(data, 'train'):,} images of the "
             f"train split, seeds {list(seeds)}, measured after {' and '.join(map(str, lengths))} training steps (the "
             f"same runs continued). {judge} of {num} samples (sample i from the same noise in every cell) against the "
             f"first {num} held-out test images, in the shipped judge's features; real-vs-real floor at N = {num} (as "
             f"many training images against the same test images, {floor['repeats']} draws): "
             f"**{floor['mean']:.2f} ± {floor['sd']:.2f}**. The bound on {num_bound} held-out test images.", "",
             "| schedule | steps with ᾱ_t < 10⁻³ | training steps | " + " | ".join(f"FD DDIM-{s}" for s in steps)
             + f" | FD DDPM-{DDPM_STEPS} | bits/dim (bound) |", "|---|---|---|" + "---|" * (len(steps) + 2)]
    for label in SCHEDULES:
        for length in lengths:
            rs = [m[f"{label}-s{seed}-{length}"] for seed in seeds]
            cell = [f"{a:.2f} ± {b:.2f}" for a, b in (mean_sd(r[k] for r in rs)
                                                      for k in [f"ddim-{s}" for s in steps] + ["ddpm"])]
            bm, bs = mean_sd(r["bpd"] for r in rs)
            lines.append(f"| {label} | {100 * near_noise_fraction(schedules[label]):.1f}% | {length} | "
                         + " | ".join(cell) + f" | {bm:.3f} ± {bs:.3f} |")
    lines += ["", "Mean ± sd over the training seeds.", "", f"![schedules]({figure_path(ctx).name})", "",
              "## Against the paper", "",
              "IDDPM finds the linear schedule's last steps nearly pure noise and the cosine schedule better in "
              "log-likelihood and, with few sampling steps, in sample quality. The verdicts, by rule:", "",
              *claim_table(claims)]
    store_claims(ctx, claims,
                 floor=floor, lengths=list(lengths), num=num)
    title = "Linear vs cosine noise schedule (IDDPM Sec. 3.2)" + (f", {data}" if data != "digits" else "")
    return write_report(ctx, title, lines)
