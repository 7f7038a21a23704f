"""``difflab reproduce``: reproduce a seed paper's claim at CPU scale: table + plot in docs/results/."""

from __future__ import annotations

import argparse

NAME = "reproduce"
HELP = "reproduce a seed paper's claim at CPU scale: table + plot in docs/results/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="one of: ddim-eta, schedules, objectives, classifier-guidance, respacing, swiss-roll, "
                                 "low-density, ebm-vs-diffusion, energy-models; "
                                 "or 'list'")
    p.add_argument("--out", default="docs/results", help="directory for <name>.md and <name>.png (default docs/results)")
    p.add_argument("--runs", default="runs/reproduce",
                   help="where the models it needs are found, or trained when absent (default runs/reproduce)")
    p.add_argument("--quick", action="store_true", help="a few hundred training steps and few samples: checks the "
                                                          "pipeline, says so in the report, proves nothing")


def execute(a) -> None:
    from .. import reproduce

    if a.name == "list":
        for name in reproduce.names():
            print(f"{name:<20} {reproduce.summary(name)}")
        return
    reproduce.module(a.name)  # an unknown name fails before anything is trained
    command = f"difflab reproduce {a.name}" + "".join(
        f" {flag} {value}" for flag, value, default in (("--out", a.out, "docs/results"), ("--runs", a.runs, "runs/reproduce"))
        if value != default) + (" --quick" if a.quick else "")
    reproduce.reproduce(a.name, out=a.out, runs=a.runs, quick=a.quick, command=command)
