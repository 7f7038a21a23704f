"""``difflab reflow``: straighten a flow-matching model by training it on its own (noise, sample) pairs."""

from __future__ import annotations

import argparse

from ._args import check_resumable, integer, long_run_arguments

NAME = "reflow"
HELP = "straighten a flow model: train on (noise, ODE sample) pairs it draws (rectified flow)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default=None,
                   help="the flow-matching run to straighten (a run of a flow preset); may be left out with --resume")
    p.add_argument("--out", required=True, help="run directory of the reflowed model (or the one to continue, with --resume)")
    p.add_argument("--pairs", type=integer, default=None, metavar="N", help="number of (noise, sample) pairs to draw")
    p.add_argument("--steps", type=integer, default=None, help="training steps (default: the teacher's train.steps)")
    p.add_argument("--sampler", default=None,
                   help="deterministic sampler that draws the pairs (default: the teacher's, ddim = Euler on the flow path)")
    p.add_argument("--ode-steps", type=integer, default=None, metavar="K",
                   help="steps of that sampler per pair (default: the teacher's sample.steps)")
    p.add_argument("--seed", type=integer, default=None, help="random seed of pairs and training (default: the teacher's)")
    long_run_arguments(p, "continue the reflow run in --out (same pairs)")
    p.epilog = ("Liu et al. 2023, 'Flow Straight and Fast', Algorithm 1. The reflowed model starts from the teacher's "
                "weights; at the end the run's log and straightness.json give the straightness of both models' paths.")


def execute(a) -> None:
    from ..training.reflow import reflow

    check_resumable(a)
    reflow(a.run, a.out, pairs=a.pairs, steps=a.steps, sampler=a.sampler, ode_steps=a.ode_steps, seed=a.seed,
           resume=a.resume, progress=not a.no_progress, device=a.device, max_minutes=a.max_minutes)
