"""``difflab export``: write a run's EMA weights and config as a small model directory."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a run's EMA weights and config as a small model directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="new directory for the exported model")
    p.add_argument("--notes", default="", help="free text recorded in model.json (e.g. how it was trained)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])


def execute(a) -> None:
    from ..pretrained import export
    out = export(a.run, a.out, weights=a.weights, notes=a.notes)
    print(f"exported {a.run} ({a.weights} weights) to {out}")
