"""What the commands share: argument types, the options every training command takes, and errors."""

from __future__ import annotations

import argparse


def integer(text: str) -> int:
    """An argparse type: an integer, with a clear message otherwise."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def class_list(text: str) -> list[int]:
    """An argparse type: class ids like 3 or 3,7."""
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like 3 or 3,7, got {text!r}") from None


def numbers(text: str) -> list[float]:
    """An argparse type: numbers like 0.2,0.5."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.2,0.5, got {text!r}") from None


def error(message: str):
    """The library's error, for the few checks that only a command can make (a flag without its partner)."""
    from ..errors import DifflabError
    return DifflabError(message)


def training_arguments(t: argparse.ArgumentParser, config_help: str) -> None:
    """The options every training command takes."""
    t.add_argument("config", help=config_help)
    t.add_argument("--out", required=True, help="run directory to create (or continue, with --resume)")
    t.add_argument("--steps", type=integer, help="number of training steps (default: the config's)")
    t.add_argument("--seed", type=integer, help="random seed (default: the config's)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest valid checkpoint (CONFIG must be the run's own)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:<i> or mps (default: cuda when available, else cpu)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes with a checkpoint, to continue with --resume")


def long_run_arguments(t: argparse.ArgumentParser, resume_help: str) -> None:
    """The options of a command that trains after its own setup (reflow, distill): --resume, --device,
    --no-progress, --max-minutes."""
    t.add_argument("--resume", action="store_true", help=resume_help)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:<i> or mps (default: cuda when available, else cpu)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes with a checkpoint, to continue with --resume")


def check_resumable(a) -> None:
    """``--resume`` needs a run directory to continue."""
    from pathlib import Path

    if a.resume and not (Path(a.out) / "config.json").is_file():
        raise error(f"cannot resume: {a.out!r} is not a run directory (no config.json)." if Path(a.out).exists()
                    else f"cannot resume: run directory {a.out!r} does not exist.")


def parse_options(items: list[str]) -> dict:
    """KEY=VALUE pairs; values read as int, float, true/false or else text."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise error(f"--option expects KEY=VALUE, got {item!r}.")
        value: object = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def run_trainer(a, resolve, train) -> None:
    """A training command: resolve the config (preset or file) and train, or resume, the run in --out."""
    check_resumable(a)
    train(resolve(a.config), a.out, steps=a.steps, seed=a.seed, resume=a.resume, device=a.device,
          progress=not a.no_progress, max_minutes=a.max_minutes)
