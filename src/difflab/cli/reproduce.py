"""``difflab reproduce``: reproduce a seed paper's claim at CPU scale: table + plot in docs/results/."""

from __future__ import annotations

import argparse

NAME = "reproduce"
HELP = "reproduce a seed paper's claim at CPU scale: table + plot in docs/results/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..reproduce import names

    p.add_argument("name", nargs="?", default=None,
                   help=f"one of: {', '.join(names())}; 'list'; or 'index' (rewrite the README's claims table from the "
                        "stored numbers)")
    p.add_argument("--all", action="store_true", help="every reproduction not yet written (resumable), then the "
                                                      "README's claims table")
    p.add_argument("--force", action="store_true", help="with --all: re-run reproductions already written")
    p.add_argument("--out", default="docs/results", help="directory for <name>.md and <name>.png (default docs/results)")
    p.add_argument("--runs", default="runs/reproduce",
                   help="where the models it needs are found, or trained when absent (default runs/reproduce)")
    p.add_argument("--dataset", default=None, help="the dataset, for the reproductions that run beyond digits "
                                                  "(schedules: digits or mnist; the report is then <name>-<dataset>.md)")
    p.add_argument("--quick", action="store_true", help="a few hundred training steps and few samples: checks the "
                                                          "pipeline, says so in the report, proves nothing")


def execute(a) -> None:
    from .. import reproduce

    from ._args import error

    if a.all == (a.name is not None):
        raise error("give one reproduction's name (or 'list' / 'index'), or --all; not both and not neither.")
    if a.force and not a.all:
        raise error("--force applies to --all (a named reproduction always runs).")
    if a.name == "list":
        for name in reproduce.names():
            print(f"{name:<20} {reproduce.summary(name)}")
        return
    if a.name == "index":
        from pathlib import Path

        from ..reproduce.index import write_index
        write_index(Path(a.out), reproduce.index_names())
        return
    if a.dataset is not None and a.all:
        raise error("--dataset applies to one named reproduction; --all runs the digits ones.")
    if a.name is not None:
        reproduce.check_dataset(a.name, a.dataset)  # an unknown name or dataset fails before anything is trained
    command = f"difflab reproduce {a.name or '--all'}" + "".join(
        f" {flag} {value}" for flag, value, default in (("--out", a.out, "docs/results"), ("--runs", a.runs, "runs/reproduce"))
        if value != default) + (f" --dataset {a.dataset}" if a.dataset not in (None, "digits") else "") \
        + (" --quick" if a.quick else "")
    if a.all:
        reproduce.reproduce_all(out=a.out, runs=a.runs, quick=a.quick, force=a.force, command=command)
    else:
        reproduce.reproduce(a.name, out=a.out, runs=a.runs, quick=a.quick, command=command, dataset=a.dataset)
