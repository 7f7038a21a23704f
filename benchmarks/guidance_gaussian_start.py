"""Class-conditional sampling from the data's Gaussian: does the unconditional Gaussian start take the class away?

The data Gaussian (:mod:`difflab.data_gaussian`) is fitted to all classes at once. Carrying the noise down to σ̃
with it decides part of the image before the class-conditional network takes over, so a late start could fix a
class the label did not ask for. For the shipped MNIST model, N samples asked for class i mod 10, with
classifier-free guidance at scales w (Ho & Salimans 2022), UniPC 10 steps, from the Gaussian start σ̃ (0 = off):
the share the judge names as the class asked for (95% Wilson interval) and the failed share
(:mod:`difflab.metrics.failures`). Sample i comes from noise i in every row.

    python benchmarks/guidance_gaussian_start.py              # N = 500 per row, about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--starts", default="0,5,20")
    p.add_argument("--scales", default="0,3")
    a = p.parse_args()
    from difflab.metrics.classifiers import judge
    from difflab.metrics.failures import failed_share, wilson_interval
    from difflab.random import generators_from_seeds
    from difflab.run import load

    run = load("mnist")
    asked = torch.arange(a.num) % 10
    lines = [f"Shipped `mnist` model, N = {a.num} per row (sample i asked for class i mod 10, from noise i), UniPC "
             "10 steps (20 network evaluations with guidance). Accuracy: the MNIST judge's top class equals the class "
             "asked for. Failed: judge confidence < 0.5 or a brightness no real image has. 95% Wilson intervals.", "",
             "| Gaussian start σ̃ | guidance w | class accuracy | 95% interval | failed | 95% interval | seconds |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    t_all = time.perf_counter()
    for start in (float(s) for s in a.starts.split(",")):
        for w in (float(s) for s in a.scales.split(",")):
            t0 = time.perf_counter()
            x = run.sample(a.num, sampler="unipc", steps=10, classes=asked.tolist(), guidance="cfg", scale=w,
                           gaussian_start=start, generator=generators_from_seeds(range(a.num)))
            pred, _ = judge(x, "mnist")
            right = int((pred == asked).sum())
            lo, hi = wilson_interval(a.num - right, a.num)
            f = failed_share(x, "mnist")
            lines.append(f"| {start:g} | {w:g} | {100 * right / a.num:.1f}% | {100 * (1 - hi):.1f}–{100 * (1 - lo):.1f}% "
                         f"| {100 * f['failed']:.1f}% | {100 * f['failed 95% low']:.1f}–{100 * f['failed 95% high']:.1f}% "
                         f"| {time.perf_counter() - t0:.0f} |")
            print(lines[-1], flush=True)
    lines += ["", f"CPU, {torch.get_num_threads()} threads; {time.perf_counter() - t_all:.0f} s in all."]
    write_table("guidance_gaussian_start.md", "Class-conditional sampling from the data's Gaussian start", lines)


if __name__ == "__main__":
    main()
