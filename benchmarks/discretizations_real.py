"""Samplers x discretizations on the shipped (real, cosine-schedule) models: FD in the judge's features.

The samplers benchmark (benchmarks/samplers.py) uses the exact Gaussian-mixture oracle, whose prediction is exact
at every noise level. A trained network is least accurate at the schedule's last step (the cosine schedule's has
σ/α ≈ 2·10⁴), and which steps a sampler visits then matters more than the oracle shows. This script draws
``--num`` samples from each shipped model with each sampler and discretization at ``--steps`` steps and scores
them with FD[<dataset>-classifier] against as many test images (lower is better).

    python benchmarks/discretizations_real.py                       # mnist and fashion-mnist, 1000 samples, 10 steps
    python benchmarks/discretizations_real.py --models mnist --num 500
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="mnist,fashion-mnist")
    p.add_argument("--samplers", default="ddim,dpmpp_2m,heun")
    p.add_argument("--discretizations", default="trailing,karras,logsnr")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    a = p.parse_args()

    import difflab
    from difflab.evaluate import evaluate_samples
    from difflab.random import generators_from_seeds
    from difflab.samplers import info

    command = "python " + " ".join(shlex.quote(v) for v in [str(Path(sys.argv[0])), *sys.argv[1:]])
    lines = ["# Samplers x discretizations on the shipped models (real networks, cosine schedule)", "",
             f"Command: `{command}`  ", f"Date: {time.strftime('%Y-%m-%d %H:%M')}; CPU, "
             f"{torch.get_num_threads()} thread(s).", "",
             f"{a.num} samples per cell from the same seeds (sample i from seed i), {a.steps} steps, scored by "
             f"FD[<dataset>-classifier] (the shipped judge's 128-d features; not Inception FID) against the first "
             f"{a.num} test images; lower is better. Heun spends about two network evaluations per step (NFE "
             "column), the others one.", ""]
    start = time.perf_counter()
    for model in a.models.split(","):
        run = difflab.load(model)
        dataset = run.config["data"]["name"]
        discs = a.discretizations.split(",")
        lines += [f"## `{model}` ({run.config['diffusion']['schedule']} schedule, step {run.step})", "",
                  "| sampler | NFE | " + " | ".join(discs) + " |", "|---|---|" + "---|" * len(discs)]
        for sampler in a.samplers.split(","):
            cells = []
            for disc in discs:
                t0 = time.perf_counter()
                chunks = [run.sample(min(a.batch, a.num - lo), sampler=sampler, steps=a.steps, discretization=disc,
                                     generator=generators_from_seeds(list(range(lo, min(lo + a.batch, a.num)))))
                          for lo in range(0, a.num, a.batch)]
                fd = evaluate_samples(torch.cat(chunks), dataset, "fd", num_ref=a.num)[f"FD[{dataset}-classifier]"]
                cells.append(fd)
                print(f"{model} {sampler} {disc}: FD {fd:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            best = min(cells)
            nfe = round(info(sampler)["nfe_per_step"] * a.steps)
            lines.append(f"| {sampler} | ≈{nfe} | " + " | ".join(f"**{v:.2f}**" if v == best else f"{v:.2f}"
                                                             for v in cells) + " |")
        lines.append("")
    lines.append(f"Whole run: {(time.perf_counter() - start) / 60:.1f} min.")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "discretizations_real.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
