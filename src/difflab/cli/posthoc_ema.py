"""``difflab posthoc-ema``: after training, the EMA of any length from a run's power-function snapshots (Karras et
al. 2024; :mod:`difflab.training.posthoc_ema`), written as a model directory every command loads."""

from __future__ import annotations

import argparse

from ._args import integer

NAME = "posthoc-ema"
HELP = "choose the EMA length after training: combine a run's post-hoc EMA snapshots into a model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory trained with train.posthoc_ema (e.g. [0.05, 0.1])")
    p.add_argument("--list", action="store_true", help="list the run's snapshots (steps and σ_rel) and write nothing")
    p.add_argument("--sigma-rel", type=float, default=None,
                   help="the EMA length: the standard deviation of the averaged steps relative to the step, in "
                        "(0, 0.2887); EDM2 tracks 0.05 and 0.1 and finds optima between 0.03 and 0.2")
    p.add_argument("--step", type=integer, default=None, help="the step to average up to (default: the newest snapshot)")
    p.add_argument("--out", default=None, help="new directory for the model (config.json + model.safetensors)")
    p.add_argument("--notes", default="", help="free text recorded beside the model")


def execute(a) -> None:
    from pathlib import Path

    from ..errors import DifflabError
    from ..io import check_writable
    from ..pretrained import export
    from ..training.posthoc_ema import check_sigma_rel, snapshot_table, synthesize

    if not (Path(a.run) / "config.json").is_file():
        raise DifflabError(f"{a.run!r} is not a run directory (no config.json).")
    if a.list:
        print(snapshot_table(a.run))
        return
    if a.sigma_rel is None or a.out is None:
        raise DifflabError("posthoc-ema needs --sigma-rel and --out (or --list to see the run's snapshots).")
    check_sigma_rel(a.sigma_rel, "--sigma-rel")
    if Path(a.out).exists():
        raise DifflabError(f"⟨out⟩ {a.out!r} already exists; choose a new directory.")
    check_writable(a.out, "model directory", directory=True)
    state, info = synthesize(a.run, a.sigma_rel, a.step)
    out = export(a.run, a.out, weights=f"posthoc-ema sigma_rel={a.sigma_rel:g}", notes=a.notes, tensors=state,
                 step=info["step"])
    print(f"wrote the σ_rel = {a.sigma_rel:g} average (γ = {info['gamma']:.2f}) at step {info['step']} to {out}, "
          f"from {len(info['snapshots'])} snapshots (profile fit error {100 * info['profile_error']:.2f}%)")
