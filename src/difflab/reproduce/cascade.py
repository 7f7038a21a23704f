"""A two-stage cascade against a single-stage model at equal training compute (Dhariwal & Nichol 2021, Sec. 5 and
Table 5, "ADM-G + ADM-U"; Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image Generation").

Digits scale, three training seeds on the 1,347 training digits. The cascade: a class-conditional base model at 4×4
(the digits' 2×2 average pools) whose samples an SR3 upsampler (Saharia et al. 2021) turns into 8×8 digits; the
upsampler is conditioned on exactly those pools. The single stage: the same class-conditional network at 8×8.
Equal training compute: the single-stage model trains ``LENGTH`` steps; the base and the upsampler train the same
number of steps each, chosen so that their forward FLOPs per example (counted by ``torch.utils.flop_counter``, the
batch being equal) add up to the single-stage model's times ``LENGTH`` — a training step costs about three forward
passes for every network alike. Both pipelines draw classes 0–9 in turn with classifier-free guidance w ∈ {0, 1}
(label dropout 0.1 in training; ADM guides its base with a classifier, which here would need a noisy 4×4 classifier
too). FD in the digits judge's features against the 450 held-out test digits; the upsampler applied to the real test
digits' pools shows what the second stage alone costs. Verdicts: :mod:`difflab.reproduce.claims`.
"""

from __future__ import annotations

import torch

from .claims import Claim, claim_table, mean_sd
from .common import Measures, draw, figure_path, floor_band, floors, preset, run_or_train, scores, store_claims, write_report

LENGTH = 2000  # the single-stage model's training steps
GUIDANCE = (0.0, 1.0)
STEPS, SR_STEPS = 50, 50  # DDIM steps of the base and single-stage models; ancestral SR3 steps of the upsampler
PAPER = "Dhariwal & Nichol 2021, Table 5"
FACTOR = 2


def configs() -> dict[str, dict]:
    """The three networks: the single-stage 8×8 model, the 4×4 base and the 4×4 → 8×8 upsampler."""
    conditional = {"train": {"label_dropout": 0.1, "sample_every": 0}}
    return {
        "single": preset("digits", model={"num_classes": 10}, **conditional),
        "base": preset("digits", data={"image_size": 8 // FACTOR},
                       model={"image_size": 8 // FACTOR, "num_classes": 10, "attention_resolutions": [2]},
                       **conditional),
        "upsampler": preset("digits", data={"low_res_factor": FACTOR},
                            model={"num_classes": None, "cond_channels": 1}, train={"sample_every": 0}),
    }


def forward_flops(config: dict) -> int:
    """Floating-point operations of one forward pass of the config's network on one example, as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import build_model

    m = config["model"]
    net = build_model(m).eval()
    x = torch.zeros(1, m["in_channels"], m["image_size"], m["image_size"])
    y = torch.zeros(1, dtype=torch.long) if m.get("num_classes") else None
    cond = torch.zeros(1, m["cond_channels"], m["image_size"], m["image_size"]) if m.get("cond_channels") else None
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, torch.tensor([500]), y, cond=cond)
    return int(counter.get_total_flops())


def stage_length(length: int, flops: dict[str, int]) -> int:
    """Training steps of each cascade stage that match ``length`` steps of the single-stage model in FLOPs."""
    return max(1, round(length * flops["single"] / (flops["base"] + flops["upsampler"])))


def sample_options(w: float) -> dict:
    classes = list(range(10))
    return {"sampler": "ddim", "steps": STEPS, "classes": classes} | ({"guidance": "cfg", "scale": w} if w else {})


def cascade_samples(runs: dict, num: int, w: float):
    from ..tasks.cascade import cascade

    return cascade(runs["base"], runs["upsampler"], num, seed=0, base_options=sample_options(w), sr_steps=SR_STEPS)


def measure(ctx, runs: dict, num: int, w: float, seed: int) -> dict:
    single = draw(runs["single"], num, **sample_options(w))
    two = cascade_samples(runs, num, w)
    r = {"single": scores(single, "digits", num, "fd")["fd"], "cascade": scores(two.high, "digits", num, "fd")["fd"]}
    print(f"[{ctx.name}] seed {seed} w {w:g}: single-stage FD {r['single']:.3f}, cascade FD {r['cascade']:.3f}")
    return r


def training_seconds(run_dir) -> float:
    """The wall time a run's training took, from its ``log.csv`` (each invocation's clock restarts at zero, so a
    resumed run adds the last time logged by each)."""
    import csv

    total = last = 0.0
    with open(run_dir / "log.csv", newline="") as f:
        for row in csv.DictReader(f):
            seconds = float(row["seconds"])
            if seconds < last:
                total += last
            last = seconds
    return total + last


def upsampled_real(ctx, upsampler, num: int, seed: int) -> float:
    """FD of the upsampler's outputs from the held-out test digits' own 4×4 pools: the second stage alone."""
    from ..data import load_dataset
    from ..data.lowres import low_res
    from ..random import per_sample_generators
    from ..tasks.superres import sr3

    test = load_dataset("digits", split="test").data[:num]
    high = sr3(upsampler, low_res(test, FACTOR), steps=SR_STEPS, generator=per_sample_generators(0, 0, num, num))
    fd = scores(high, "digits", num, "fd")["fd"]
    print(f"[{ctx.name}] seed {seed}: upsampler on the real test pools, FD {fd:.3f}")
    return fd


def main(ctx):
    from .. import plotting

    seeds, num, length = ctx.seeds, ctx.num, ctx.length(LENGTH)
    cfgs = configs()
    flops = {k: forward_flops(c) for k, c in cfgs.items()}
    stage = stage_length(length, flops)
    measures = Measures(ctx)
    floor = measures.get(f"floors-{num}", lambda: floors("digits", num))["fd"]
    names = {"single": "digits-cond", "base": "digits4-cond", "upsampler": "digits-sr"}
    lengths = {"single": length, "base": stage, "upsampler": stage}
    for seed in seeds:
        keys = [f"s{seed}-w{w:g}" for w in GUIDANCE] + [f"s{seed}-sr-real", f"s{seed}-seconds"]
        if all(k in measures.values for k in keys):
            continue
        runs = {k: run_or_train(ctx, f"{names[k]}-s{seed}", cfgs[k], steps=lengths[k], seed=seed)[0] for k in cfgs}
        for w in GUIDANCE:
            measures.get(f"s{seed}-w{w:g}", lambda: measure(ctx, runs, num, w, seed))
        measures.get(f"s{seed}-sr-real", lambda: upsampled_real(ctx, runs["upsampler"], num, seed))
        measures.get(f"s{seed}-seconds", lambda: {k: training_seconds(r.path) for k, r in runs.items()})
    m = measures.values
    seconds = {k: mean_sd(m[f"s{seed}-seconds"][k] for seed in seeds)[0] for k in cfgs}

    def vals(w, which):
        return tuple(m[f"s{seed}-w{w:g}"][which] for seed in seeds)

    claims = [Claim(f"the cascade beats the single-stage model at equal training compute (w = {w:g})", PAPER,
                    "FD[digits-classifier]", "single stage", "cascade", "negative", vals(w, "single"),
                    vals(w, "cascade"), tuple(seeds), floor=floor["mean"], floor_sd=floor["sd"]) for w in GUIDANCE]

    fig = plotting._figure(6.5, 4)
    ax = fig.add_subplot()
    for i, which in enumerate(("single", "cascade")):
        for j, w in enumerate(GUIDANCE):
            x = j + (i - 0.5) * 0.2
            ax.plot([x] * len(seeds), vals(w, which), "o", color=f"C{i}", alpha=0.5)
            ax.errorbar([x], [mean_sd(vals(w, which))[0]], yerr=[mean_sd(vals(w, which))[1]], marker="_", ms=20,
                        capsize=4, color=f"C{i}", label=("single stage 8×8" if which == "single" else
                                                         "cascade 4×4 → 8×8") if j == 0 else None)
    sr_real = mean_sd(m[f"s{seed}-sr-real"] for seed in seeds)
    ax.axhline(sr_real[0], color="C2", linestyle=":", label="upsampler on the real test pools")
    floor_band(ax, floor)
    ax.set_xticks(range(len(GUIDANCE)), [f"w = {w:g}" for w in GUIDANCE])
    ax.set(ylabel="FD[digits-classifier] (dots: seeds; bar: mean ± sd)", xlim=(-0.6, len(GUIDANCE) - 0.4),
           title=f"cascade vs single stage at equal training FLOPs, N = {num}")
    ax.legend(fontsize=8)
    plotting._save_figure(fig, figure_path(ctx))
    runs = {k: run_or_train(ctx, f"{names[k]}-s{seeds[0]}", cfgs[k], steps=lengths[k], seed=seeds[0])[0] for k in cfgs}
    w = GUIDANCE[-1]
    two = cascade_samples(runs, 20, w)
    grid = [draw(runs["single"], 20, **sample_options(w)),
            torch.nn.functional.interpolate(two.low, scale_factor=FACTOR, mode="nearest"), two.high]
    plotting.save_image_grid(torch.cat(grid).clamp(0, 1), figure_path(ctx, "_samples"), nrow=20)

    lines = [f"Runs: `{ctx.runs}/{{digits-cond,digits4-cond,digits-sr}}-s{{{','.join(map(str, seeds))}}}`: the "
             "`digits` preset's U-Net (cosine, L_simple, batch 64) on the 1,347 training digits, class-conditional with "
             "label dropout 0.1 (single stage, and the base at 4×4 with attention at 2×2), and an unconditional SR3 "
             f"upsampler conditioned on the bicubically upsampled 2×2 pools. Forward FLOPs per example "
             f"(`torch.utils.flop_counter`): single stage {flops['single'] / 1e6:.2f} M, base "
             f"{flops['base'] / 1e6:.2f} M, upsampler {flops['upsampler'] / 1e6:.2f} M; so {length} single-stage "
             f"training steps match {stage} steps of each stage. Sampling: DDIM-{STEPS} (base, single stage), then "
             f"ancestral SR3 with {SR_STEPS} steps (the cascade's sampling costs "
             f"{(STEPS * flops['base'] + SR_STEPS * flops['upsampler']) / (STEPS * flops['single']):.2f}× the single "
             f"stage's at w = 0; guidance doubles the base's and the single stage's evaluations). Training took "
             f"{seconds['single']:.0f} s for the single stage and {seconds['base']:.0f} + {seconds['upsampler']:.0f} s "
             f"for the cascade's stages (mean over seeds, this machine: small networks run below their FLOP rate, so "
             f"equal FLOPs are not equal CPU time). {num} samples per cell, classes 0–9 in turn; "
             f"FD[digits-classifier] against the {num} held-out test digits; real-vs-real floor at N = {num}: "
             f"**{floor['mean']:.2f} ± {floor['sd']:.2f}**.", "",
             "| pipeline | " + " | ".join(f"FD, w = {w:g}" for w in GUIDANCE) + " |", "|---|" + "---|" * len(GUIDANCE)]
    for which, label in (("single", "single stage, 8×8"), ("cascade", "cascade, 4×4 base → SR3 8×8")):
        lines.append(f"| {label} | " + " | ".join("{:.2f} ± {:.2f}".format(*mean_sd(vals(w, which)))
                                                 for w in GUIDANCE) + " |")
    lines += [f"| upsampler alone, from the real test digits' pools | {sr_real[0]:.2f} ± {sr_real[1]:.2f} |"
              + " |" * (len(GUIDANCE) - 1), "", "Mean ± sd over the training seeds.", "",
              f"![cascade vs single stage]({figure_path(ctx).name})", "",
              f"Seed {seeds[0]}, w = {w:g}, sample i from the same noise in each row: the single stage; the cascade's "
              "4×4 base (shown enlarged); its upsampled 8×8 digits.", "",
              f"![samples]({figure_path(ctx, '_samples').name})", "", "## Against the paper", "",
              "Dhariwal & Nichol (Table 5) reach a lower FID at 256×256 and 512×512 by sampling a guided base model at "
              "lower resolution and upsampling it (ADM-G + ADM-U) than with a single guided model at full "
              "resolution; Ho et al. (2022) find cascades better at equal model budget. The verdicts, by rule:", "",
              *claim_table(claims)]
    store_claims(ctx, claims, floor=floor,
                 length=length, stage_length=stage, flops=flops, num=num)
    return write_report(ctx, "Two-stage cascade vs single stage at equal training compute (ADM Table 5)", lines)
