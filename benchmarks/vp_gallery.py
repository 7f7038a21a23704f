"""Issue #4: a VP model trained on 8gaussians, sampled with every registered sampler — one picture.

    python benchmarks/vp_gallery.py [--run runs/bench-8gaussians-vp] [--steps 20]

Writes docs/results/vp_8gaussians_samplers.png and docs/results/vp_8gaussians_samplers.md (share of
samples within 0.3 of a centre for each sampler, the 8gaussians criterion of issue #2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import train_or_reuse  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs" / "results"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/bench-8gaussians-vp")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--langevin-nfe", type=int, default=500, help="network evaluations for pc and langevin")
    a = p.parse_args()

    import difflab
    from difflab import plotting, samplers
    from difflab.data.toys import GAUSSIANS8_CENTRES
    from difflab.io import write_text

    seconds = train_or_reuse("8gaussians-vp", Path(a.run))
    run = difflab.load(a.run)
    frames, labels, rows = [], [], []
    for name in samplers.names():
        info = samplers.info(name)
        nfe = a.langevin_nfe if name in ("pc", "langevin") else a.steps  # Langevin-type samplers need many steps
        steps = max(nfe // int(info["nfe_per_step"]), info["min_steps"])
        t0 = time.perf_counter()
        x = run.sample(a.num, sampler=name, steps=steps, generator=torch.Generator().manual_seed(0))
        sec = time.perf_counter() - t0
        near = (torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1).values < 0.3).float().mean().item()
        frames.append(x)
        labels.append(f"{name}, {steps} steps: {near:.0%}")
        rows.append(f"| {name} | {steps} | {info['nfe_per_step']} | {near:.3f} | {sec:.1f} |")
    plotting.plot_process_toy(frames, labels, DOCS / "vp_8gaussians_samplers.png", ncols=5,
                              title=f"8gaussians-vp: every sampler at ~{a.steps} network evaluations ({a.langevin_nfe} for pc and langevin); "
                                    "share within 0.3 of a centre")
    command = "python " + " ".join(sys.argv)
    write_text(DOCS / "vp_8gaussians_samplers.md", "\n".join([
        "# A VP model on 8gaussians, sampled with every sampler", "",
        f"Command: `{command}`; preset `8gaussians-vp` (VP SDE, β from 0.1 to 20), training {seconds:.0f} s "
        f"(nan = reused run); {a.num} samples each; target NFE {a.steps} ({a.langevin_nfe} for pc and langevin, "
        "which need many small steps); default discretization (log-SNR for this continuous schedule); "
        "the ode sampler's NFE is set by its tolerance (rtol = atol = 1e-5), not by the step count.", "",
        "| sampler | steps | NFE/step | within 0.3 of a centre | seconds |", "|---|---|---|---|---|", *rows, "",
        "![every sampler](vp_8gaussians_samplers.png)", ""]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
