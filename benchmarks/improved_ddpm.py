"""L_simple vs L_hybrid vs L_vlb (+ importance sampling) at equal training steps (Nichol & Dhariwal
2021, "Improved DDPM", Secs. 3.1–3.3 and Table 1's question at small scale).

Three unconditional runs of the dataset's preset, identical apart from the objective:
  * simple: L_simple, fixed variance β̃ (DDPM);
  * hybrid: L_simple + 0.001 L_vlb, learned variance (IDDPM's recommended setting);
  * vlb:    L_vlb alone, learned variance, t drawn by the loss-second-moment importance sampler.
Each is then measured by
  * the variational bound in bits/dim on held-out test images (every term, t = T..1) — the
    likelihood claim: learned variances bring the bound down, L_vlb most of all;
  * sample quality with ancestral sampling at T steps and respaced to 50 steps (the learned
    variance should keep quality at few steps): FD, precision and recall in the shipped judge
    classifier's feature space against real test images, FD[<dataset>-classifier].

    python benchmarks/improved_ddpm.py --dataset digits --steps 4000               # CPU, about an hour
    python benchmarks/improved_ddpm.py --dataset mnist --steps 5000 --device cuda --data-root .gpu/mnist
Stages: ``--stage train`` (the three runs, in parallel processes), ``--stage eval``, or ``all``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import RESULTS, write_table

VARIANTS = {
    "simple": {"diffusion": {"loss": "simple"}},
    "hybrid": {"diffusion": {"loss": "hybrid", "learned_variance": True}},
    "vlb": {"diffusion": {"loss": "vlb", "learned_variance": True}, "train": {"timestep_sampler": "loss-second-moment"}},
}


def _config(dataset: str, data_root: str | None, variant: str, steps: int) -> dict:
    cfg = {"preset": dataset, "data": {"name": dataset, "root": data_root}, "model": {"num_classes": None},
           "train": {"steps": steps, "sample_every": 0, "save_every": 1000}}
    for section, values in VARIANTS[variant].items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def train_all(a) -> None:
    import yaml

    procs = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in a.variants:
        out = Path(a.runs) / name
        cfg_path = Path(a.runs) / f"{name}.yaml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(_config(a.dataset, a.data_root, name, a.steps)))
        cmd = [sys.executable, "-m", "difflab", "train", str(cfg_path), "--out", str(out), "--no-progress",
               "--device", a.device]
        if out.exists():
            cmd.append("--resume")
        if a.max_minutes:
            cmd += ["--max-minutes", str(a.max_minutes)]
        log = open(Path(a.runs) / f"{name}.log", "a")
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
        if not a.parallel:
            procs[-1][1].wait()
    for name, p in procs:
        p.wait()
        print(f"{name}: exit {p.returncode}; " + (Path(a.runs) / f"{name}.log").read_text().strip().splitlines()[-1])


@torch.no_grad()
def evaluate(a) -> None:
    import difflab
    from difflab.data import load_dataset
    from difflab.metrics.classifiers import load_judge
    from difflab.metrics.frechet import frechet_distance_of
    from difflab.metrics.precision_recall import precision_recall
    from difflab.plotting import save_image_grid
    from difflab.random import generators_from_seeds
    from difflab.variational_bound import full_bound, model_predictor

    test = load_dataset(a.dataset, root=a.data_root, split="test")
    judge = load_judge(a.dataset).to(a.device)
    real = test.data[: a.num_samples].to(a.device)
    real_feats = judge.features(real).cpu()
    x_bpd = (test.data[: a.num_bpd] * 2 - 1).to(a.device)  # model coordinates, [-1, 1]
    rows = ["| objective | steps trained | bits/dim (bound) | L_T | Σ L_t (t ≥ 1) | L_0 | sampler | FD | precision | recall |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    curves = {}
    for name in a.variants:
        run = difflab.load(Path(a.runs) / name, device=a.device)
        run.model.eval()
        learned = run.config["diffusion"].get("learned_variance", False)
        predict = model_predictor(run.model, run.schedule, learned_variance=learned)
        parts = []
        for lo in range(0, x_bpd.shape[0], a.batch):
            parts.append(full_bound(run.schedule, x_bpd[lo:lo + a.batch], predict, torch.Generator().manual_seed(lo),
                                    clip_x0=(-1.0, 1.0)))
        bound = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        total, se = bound["total_bpd"].mean().item(), bound["total_bpd"].std().item() / bound["total_bpd"].numel() ** 0.5
        curves[name] = bound["terms_bpd"].mean(0)
        middle = bound["terms_bpd"][:, 1:].sum(1).mean().item()
        first = True
        for steps in (run.schedule.T, 50):
            t0 = time.perf_counter()
            chunks = []
            for lo in range(0, a.num_samples, a.batch):
                m = min(a.batch, a.num_samples - lo)
                chunks.append(run.sample(m, sampler="ddpm", steps=steps, generator=generators_from_seeds(range(lo, lo + m))))
            x = torch.cat(chunks)
            feats = judge.features(x.to(a.device)).cpu()
            fd = frechet_distance_of(real_feats, feats)
            pr = precision_recall(real_feats, feats)
            save_image_grid(x[:100].cpu(), RESULTS / f"improved_ddpm_{a.dataset}_{name}_ddpm{steps}.png", nrow=10)
            head = (f"| {name} | {run.step} | {total:.3f} ± {se:.3f} | {bound['prior_bpd'].mean().item():.4f} | "
                    f"{middle:.3f} | {bound['decoder_bpd'].mean().item():.3f} |") if first else "| | | | | | |"
            rows.append(f"{head} ddpm-{steps} ({time.perf_counter() - t0:.0f} s) | {fd:.3f} | {pr['precision']:.3f} | {pr['recall']:.3f} |")
            print(rows[-1], flush=True)
            first = False
    _plot_terms(curves, RESULTS / f"improved_ddpm_{a.dataset}_terms.png", a.dataset)
    (RESULTS / f"improved_ddpm_{a.dataset}.json").write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    lines = [f"Dataset `{a.dataset}` (preset model, unconditional), device {a.device}. Bound on {a.num_bpd} test images "
             f"(mean ± standard error), x̂_0 clipped to [−1, 1]; fixed-variance runs use β̃. Samples: {a.num_samples} "
             f"per setting, ancestral (ddpm) at T steps and respaced to 50 (learned variances on the respaced chain). "
             f"FD, precision, recall (k = 5): FD[{a.dataset}-classifier], in the shipped judge's 128-d features against "
             f"{a.num_samples} real test images — not Inception FID.", "", *rows, "",
             f"L_t against t: `benchmarks/results/improved_ddpm_{a.dataset}_terms.png`; grids: "
             f"`benchmarks/results/improved_ddpm_{a.dataset}_<objective>_ddpm<steps>.png`."]
    write_table(f"improved_ddpm_{a.dataset}.md", f"Improved DDPM objectives on {a.dataset}", lines)


def _plot_terms(curves: dict, path: Path, dataset: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difflab.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(range(1, len(c) + 1), c.numpy(), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("t (term L_{t-1})")
    ax.set_ylabel("bits/dim")
    ax.set_title(f"{dataset}: terms of the variational bound")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--runs", default="runs/improved_ddpm")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--stage", default="all", choices=["train", "eval", "all"])
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    p.add_argument("--parallel", action="store_true", help="train the variants in parallel processes")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--num-bpd", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    if a.stage in ("train", "all"):
        train_all(a)
    if a.stage in ("eval", "all"):
        evaluate(a)


if __name__ == "__main__":
    main()
