"""``difflab distill``: a diffusion model into one that samples in fewer steps: progressive distillation (halve the
steps, round after round) or consistency distillation (one or two steps)."""

from __future__ import annotations

import argparse

from ._args import error, integer, long_run_arguments

NAME = "distill"
HELP = ("distill a model into one that samples in fewer steps (progressive distillation, Salimans & Ho 2022; "
        "consistency distillation, Song et al. 2023)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the teacher: a run directory, an exported model or a shipped model's name "
                               "(progressive: a data-space model on a discrete schedule, unconditional or "
                               "class-conditional; consistency: any data-space diffusion model with a fixed variance)")
    p.add_argument("--method", default="progressive", choices=["progressive", "consistency"],
                   help="progressive: a student of N steps learns the teacher's 2N DDIM steps, round after round; "
                        "consistency: a consistency model learns to map every point of the teacher's ODE "
                        "trajectories to their end (sample it in 1 or 2 steps)")
    p.add_argument("--to", type=integer, default=None, metavar="N", help="progressive: steps of the last student (e.g. 4)")
    p.add_argument("--from", dest="from_steps", type=integer, default=None, metavar="M",
                   help="progressive: the teacher's steps (default: its sample.steps); --to must be M halved one or "
                        "more times")
    p.add_argument("--out", required=True, help="progressive: directory of the rounds, OUT/round-<N> for each student; "
                                                "consistency: the student's run directory")
    p.add_argument("--steps", type=integer, default=None,
                   help="training steps (progressive: per round, default 2000; consistency: default the teacher's)")
    p.add_argument("--parameterization", default="v", choices=["v", "x0", "eps"],
                   help="progressive: the students' output (default v: ε cannot make large steps where α_t → 0)")
    p.add_argument("--levels", type=integer, default=None,
                   help="consistency: the noise levels of the teacher's ODE steps (Karras grid; default 18)")
    long_run_arguments(p, "continue the run in --out (progressive: keep its finished rounds and continue the next)")
    p.epilog = ("Salimans & Ho 2022, Algorithm 2: each round is an ordinary run; sample the last one with "
                "`difflab sample OUT/round-N --steps N` (DDIM, trailing times). Song et al. 2023, Algorithm 2: the "
                "student is an ordinary run; `difflab sample OUT --steps 1` draws in one network evaluation.")


def execute(a) -> None:
    if a.method == "consistency":
        from ..training.consistency_distill import LEVELS, consistency_distill

        if a.to is not None or a.from_steps is not None:
            raise error("--to and --from set the rounds of progressive distillation; consistency distillation draws "
                        "in 1 or 2 steps whatever the teacher's (leave them out).")
        out = consistency_distill(a.run, a.out, steps=a.steps,
                                  levels=a.levels or LEVELS, resume=a.resume, progress=not a.no_progress,
                                  device=a.device, max_minutes=a.max_minutes)
        print(f"distilled into {out}; sample it with: difflab sample {out} --steps 1 --out x.png")
        return
    from ..training.distill import distill, finished

    if a.to is None:
        raise error("progressive distillation needs --to, the steps of the last student (e.g. 4).")
    if a.levels is not None:
        raise error("--levels is the grid of consistency distillation; progressive distillation halves steps (--to).")
    last = distill(a.run, a.out, to=a.to, from_steps=a.from_steps, steps=a.steps or 2000,
                   parameterization=a.parameterization, resume=a.resume, progress=not a.no_progress, device=a.device,
                   max_minutes=a.max_minutes)
    if last.name != f"round-{a.to}" or not finished(last):
        print(f"stopped at --max-minutes in {last}; run the same command with --resume to continue")
        return
    print(f"distilled into {last}; sample it with: difflab sample {last} --steps {last.name.split('-')[-1]} --out x.png")
