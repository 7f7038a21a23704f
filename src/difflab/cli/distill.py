"""``difflab distill``: halve a diffusion model's sampling steps, round after round (progressive distillation)."""

from __future__ import annotations

import argparse

from ._args import integer, long_run_arguments

NAME = "distill"
HELP = "distill a model into one that samples in fewer steps (progressive distillation, Salimans & Ho 2022)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the teacher: a run directory of an unconditional model on a discrete schedule")
    p.add_argument("--method", default="progressive", choices=["progressive"],
                   help="progressive: a student of N steps learns the teacher's 2N DDIM steps, round after round")
    p.add_argument("--to", type=integer, required=True, metavar="N", help="steps of the last student (e.g. 4)")
    p.add_argument("--from", dest="from_steps", type=integer, default=None, metavar="M",
                   help="the teacher's steps (default: its sample.steps); --to must be M halved one or more times")
    p.add_argument("--out", required=True, help="directory of the rounds: OUT/round-<N> for each student")
    p.add_argument("--steps", type=integer, default=2000, help="training steps per round (default 2000)")
    p.add_argument("--parameterization", default="v", choices=["v", "x0", "eps"],
                   help="the students' output (default v: ε cannot make large steps where α_t → 0)")
    long_run_arguments(p, "keep the finished rounds in --out and continue the next")
    p.epilog = ("Salimans & Ho 2022, Algorithm 2. Each round is an ordinary run: sample the last one with "
                "`difflab sample OUT/round-N --steps N` (DDIM, trailing times).")


def execute(a) -> None:
    from ..training.distill import distill

    last = distill(a.run, a.out, to=a.to, from_steps=a.from_steps, steps=a.steps, parameterization=a.parameterization,
                   resume=a.resume, progress=not a.no_progress, device=a.device, max_minutes=a.max_minutes)
    print(f"distilled into {last}; sample it with: difflab sample {last} --steps {last.name.split('-')[-1]} --out x.png")
