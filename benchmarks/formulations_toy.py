"""EDM and flow matching on 8gaussians, judged against the data itself: the share of samples within 0.3 of a mode
centre (3 component stds; a real point lies that close with probability 1 − e^(−4.5) ≈ 0.989), the largest
deviation of a mode's share from 1/8, and the cubic-kernel MMD² to fresh real data, each beside the same number
for real data (the real-vs-real floor), with a 95% interval over 20 seeds of the samples and of the real draws.

    python benchmarks/formulations_toy.py --runs runs/edm runs/flow    # runs trained by `difflab train 8gaussians-edm|-flow`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402


def scores(x: torch.Tensor, real: torch.Tensor) -> tuple[float, float, float]:
    from difflab.data.toys import GAUSSIANS8_CENTRES
    from difflab.metrics.kid import mmd2_unbiased

    d = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double())
    near = float((d.min(1).values < 0.3).double().mean())
    share = torch.bincount(d.argmin(1), minlength=8).double() / x.shape[0]
    return near, float((share - 0.125).abs().max()), mmd2_unbiased(x.double(), real.double())


def interval(values: list[float]) -> str:
    v = torch.tensor(values, dtype=torch.float64)
    half = 1.96 * float(v.std()) / len(v) ** 0.5
    return f"{float(v.mean()):.4f} ± {half:.4f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=20)
    a = p.parse_args()

    import difflab
    from difflab.data import load_dataset

    real = [load_dataset("8gaussians", num=2 * a.num, seed=1000 + s).data for s in range(a.seeds)]
    rows = [("real data (floor)", *[interval(list(c)) for c in zip(*[scores(r[:a.num], r[a.num:]) for r in real])])]
    for path in a.runs:
        run = difflab.load(path)
        sampler, steps = run.config["sample"]["sampler"], run.config["sample"]["steps"]
        per_seed = [scores(run.sample(a.num, generator=torch.Generator().manual_seed(s)), real[s][a.num:])
                    for s in range(a.seeds)]
        rows.append((f"{path} ({run.config['diffusion']['parameterization']}, {sampler}-{steps}, step {run.step})",
                     *[interval(list(c)) for c in zip(*per_seed)]))
    lines = [f"{a.num} samples per seed, {a.seeds} seeds; intervals are 95% over the seeds. CPU, 2 cores.", "",
             "| samples | within 0.3 of a centre | max abs(mode share − 1/8) | MMD² (cubic kernel) to real |",
             "|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    write_table("formulations_toy.md", "EDM and flow matching on 8gaussians, against the real-vs-real floor", lines)


if __name__ == "__main__":
    main()
