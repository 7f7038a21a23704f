"""Acceptance check of issue #2 for 8gaussians: train the preset, draw 4000 DDIM-50 samples,
count samples within 0.3 of a centre and the share of each mode.

    python benchmarks/gaussians_modes.py [--run runs/bench-8gaussians] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import train_or_reuse, write_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/bench-8gaussians")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=4000)
    a = p.parse_args()

    import difflab
    from difflab.data.toys import GAUSSIANS8_CENTRES
    from difflab.random import generators_from_seeds

    seconds = train_or_reuse("8gaussians", Path(a.run), seed=a.seed)
    run = difflab.load(a.run)
    rows = []
    for sampler, steps, kw in (("ddim", 50, {"eta": 0.0}), ("ddim", 20, {"eta": 0.0}), ("ddpm", 1000, {}), ("ddpm", 100, {})):
        x = run.sample(a.num, sampler=sampler, steps=steps, generator=generators_from_seeds(range(a.num)), **kw)
        dist, mode = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1)
        near = (dist < 0.3).float().mean().item()
        shares = torch.bincount(mode, minlength=8).double() / a.num
        worst = (shares - 0.125).abs().max().item()
        ok = near >= 0.9 and worst <= 0.03
        rows.append(f"| {sampler} | {steps} | {near:.3f} | {' '.join(f'{s:.3f}' for s in shares.tolist())} | {worst:.3f} | {'pass' if ok else 'FAIL'} |")
    write_table("gaussians_modes.md", "8gaussians: share of samples near a centre, and mode balance", [
        f"Preset `8gaussians`, seed {a.seed}, training time {seconds:.0f} s (nan = reused run), {a.num} samples.",
        "Target (issue #2): >= 90% of samples within 0.3 of a centre; every mode 12.5% ± 3% (share of all samples, nearest centre).",
        "A perfect sampler puts 98.9% within 0.3 (3 standard deviations of a 2-D Gaussian).",
        "",
        "| sampler | steps | within 0.3 | share per mode (k·45°, k = 0..7) | largest deviation from 1/8 | verdict |",
        "|---|---|---|---|---|---|",
        *rows,
    ])


if __name__ == "__main__":
    main()
