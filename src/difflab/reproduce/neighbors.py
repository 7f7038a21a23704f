"""Do the samples copy training images? Nearest neighbours and a memorization rate, with an overfit positive control
(Ho et al. 2020, Figs. 11–12; the rate in the spirit of Carlini et al. 2023).

The ``schedules`` reproduction's cosine digits models (train split, three seeds, 4,000 steps) against deliberately
overfit controls: the same network trained on only ``OVERFIT_IMAGES`` training digits until it reproduces them.
For each model, 450 DDIM-50 samples are matched to their nearest training images in pixels and in the digits
judge's features (:func:`difflab.tasks.neighbors.find`); a sample counts as a copy when it lies within a third of
the median distance at which the 450 held-out test digits find their nearest training image. Verdicts:
:mod:`difflab.reproduce.claims`.
"""

from __future__ import annotations

from .claims import Claim, claim_table, mean_sd
from .common import Measures, figure_path, preset, run_or_train, store_claims, write_report

LENGTH = 4000
OVERFIT_IMAGES = 20
OVERFIT_STEPS = 2000
PAPER = "Ho et al. 2020, Figs. 11–12"


def measure(ctx, run, num: int, figure=None) -> dict:
    from ..tasks import neighbors

    res = neighbors.find(run, num, k=3, sampler="ddim", steps=50, progress=False)
    if figure is not None:
        neighbors.figure(res, figure, rows=8)
    s = res.summary()
    out = {name: {k: v for k, v in s[name].items() if k != "memorized"} for name in ("pixels", "digits-classifier features")}
    out["num_heldout"] = s["num_heldout"]
    print(f"[{ctx.name}] {run.path}: " + ", ".join(f"{k} {v['memorization_rate']:.1%} (floor {v['heldout_floor']:.1%})"
                                                 for k, v in out.items() if k != "num_heldout"))
    return out


def main(ctx):
    seeds = ctx.seeds
    length, overfit_steps = ctx.length(LENGTH), ctx.length(OVERFIT_STEPS, quick=200)
    num = ctx.num
    measures = Measures(ctx)
    normal = preset("digits", diffusion={"schedule": "cosine", "loss": "simple"}, model={"num_classes": None},
                    train={"sample_every": 0})
    overfit = preset("digits", diffusion={"schedule": "cosine", "loss": "simple"}, model={"num_classes": None},
                     train={"sample_every": 0}, data={"num": OVERFIT_IMAGES})
    for seed in seeds:
        for kind, cfg, steps in (("normal", normal, length), ("overfit", overfit, overfit_steps)):
            key = f"{kind}-s{seed}"
            if key in measures.values:
                continue
            name = f"digits-cosine-s{seed}" if kind == "normal" else f"digits-overfit{OVERFIT_IMAGES}-s{seed}"
            run, _ = run_or_train(ctx, name, cfg, steps=steps, seed=seed)
            fig = figure_path(ctx, f"_{kind}") if seed == seeds[0] else None
            measures.get(key, lambda: measure(ctx, run, num, fig))
    m = measures.values
    spaces = ("pixels", "digits-classifier features")

    def vals(kind, space, key="memorization_rate"):
        return tuple(m[f"{kind}-s{seed}"][space][key] for seed in seeds)

    claims = [Claim(f"the overfit control copies more than a normal model ({space})", PAPER + " (positive control)",
                    "memorization rate", "normal", f"overfit on {OVERFIT_IMAGES}", "positive", vals("normal", space),
                    vals("overfit", space), tuple(seeds)) for space in spaces]

    lines = [f"Normal models: `{ctx.runs}/digits-cosine-s{{{','.join(map(str, seeds))}}}` (1,347 training digits, "
             f"{length} steps). Overfit controls: `{ctx.runs}/digits-overfit{OVERFIT_IMAGES}-s{{…}}`, the same network "
             f"and schedule trained on the first {OVERFIT_IMAGES} training digits for {overfit_steps} steps. {num} "
             "DDIM-50 samples per model; a sample is a copy when its nearest training image lies within a third of the "
             f"held-out median (the median distance from each of the {m[f'normal-s{seeds[0]}']['num_heldout']} "
             "test digits to its nearest training image); the held-out floor is the share of test digits themselves "
             "under that threshold. Command for one model: `difflab neighbors RUN --num 450 --sampler ddim --steps 50`.",
             "", "| model | space | memorization rate (mean ± sd over seeds) | held-out floor | median nearest distance | "
             "held-out median |", "|---|---|---|---|---|---|"]
    for kind in ("normal", "overfit"):
        for space in spaces:
            rate = mean_sd(vals(kind, space))
            lines.append(f"| {kind} | {space} | {rate[0]:.1%} ± {rate[1]:.1%} | "
                         f"{mean_sd(vals(kind, space, 'heldout_floor'))[0]:.1%} | "
                         f"{mean_sd(vals(kind, space, 'median_nearest_distance'))[0]:.3f} | "
                         f"{mean_sd(vals(kind, space, 'heldout_median_distance'))[0]:.3f} |")
    lines += ["", f"Normal model (seed {seeds[0]}): each sample beside its nearest training images, pixels then "
              "features:", "", f"![normal]({figure_path(ctx, '_normal').name})", "",
              f"Overfit control (seed {seeds[0]}):", "", f"![overfit]({figure_path(ctx, '_overfit').name})", "",
              "## Against the paper", "",
              "Ho et al. show samples beside their nearest training images to argue the model generalises rather than "
              "copies. A rate is only evidence if it can fail: the overfit controls must be caught. The verdicts, by "
              "rule (a normal model's rate is read against the held-out floor in the table; a null result cannot be "
              "proved, only bounded):", "", *claim_table(claims, 3)]
    store_claims(ctx, claims, num=num)
    return write_report(ctx, "Nearest training images and memorization, with an overfit control (DDPM Figs. 11–12)", lines)
