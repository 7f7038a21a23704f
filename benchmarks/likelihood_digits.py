"""Bits/dim on digits at equal training compute: the discrete-time bound of DDPM (ε, L_simple, fixed β̃) and of
improved DDPM (learned variance, L_hybrid; Nichol & Dhariwal 2021) beside the continuous-time bound of a variational
diffusion model with a learned schedule (Kingma et al. 2021), the same U-Net and steps for each, three training
seeds, 95% t-intervals over the seeds.

    python benchmarks/likelihood_digits.py        # about 25 minutes on 2 CPU cores

Digits have no held-out split yet (the "test" images are the training images; the sceptic's issue asks for one),
so these are bounds on training data: they compare the objectives, not generalisation.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402

VARIANTS = {
    "DDPM: L_simple, fixed β̃, discrete bound (T = 1000)": {"preset": "digits"},
    "improved DDPM: L_hybrid, learned variance, discrete bound (T = 1000)": {
        "preset": "digits", "diffusion": {"loss": "hybrid", "learned_variance": True}},
    "VDM: continuous bound, learned γ(t)": {"preset": "digits-vdm"},
}
T_CRIT_95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/likelihood_digits")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--num", type=int, default=300, help="images the bound is measured on")
    a = p.parse_args()

    from difflab import checkpoint
    from difflab.config import resolve
    from difflab.evaluate import negative_log_likelihood
    from difflab.run import load
    from difflab.training.diffusion import train

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = []
    for i, (name, spec) in enumerate(VARIANTS.items()):
        values, trained = [], []
        for seed in range(a.seeds):
            out = Path(a.out) / f"v{i}-{seed}"
            if not (out.exists() and checkpoint.list_checkpoints(out)):
                s = time.perf_counter()
                cfg = resolve({**spec, "seed": seed, "train": {"steps": a.steps, "save_every": a.steps, "sample_every": 0}})
                train(cfg, out, progress=False, log=lambda *_: None)
                trained.append(time.perf_counter() - s)
            r = negative_log_likelihood(load(out), a.num, progress=False)
            values.append(next(v for k, v in r.items() if k.startswith("NLL bits/dim")))
        v = torch.tensor(values, dtype=torch.float64)
        half = T_CRIT_95.get(len(v), 1.96) * float(v.std()) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
        per_run = f"{sum(trained) / len(trained):.0f} s" if trained else "reused"
        rows.append(f"| {name} | {float(v.mean()):.3f} ± {half:.3f} | {', '.join(f'{x:.3f}' for x in values)} | {per_run} |")
        print(rows[-1], flush=True)
    lines = [f"digits preset U-Net, {a.steps} steps of batch 64 for each objective, {a.seeds} training seeds; bits/dim of "
             f"the first {a.num} digits images (training data: digits has no held-out split yet), the 8-bit "
             "convention (256 levels, though digits have 17). 95% t-intervals over the training seeds. CPU, 2 cores; "
             f"total {(time.perf_counter() - t0) / 60:.0f} min.", "",
             "| objective and bound | bits/dim | per seed | training time per run |", "|---|---|---|---|", *rows]
    write_table("likelihood_digits.md", "Discrete-time bounds against the continuous-time VDM bound on digits", lines)


if __name__ == "__main__":
    main()
