"""The ``difflab`` command: a thin shell over the library (no math lives here).

Each command is one module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``execute(args)``, registered in :data:`COMMANDS`. Bad input raises :class:`~difflab.errors.DifflabError`; the
command prints its one sentence and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import (
    app,
    cascade,
    demo,
    denoise,
    distill,
    evaluate,
    export,
    fit_gaussian,
    inpaint,
    interpolate,
    likelihood,
    neighbors,
    posthoc_ema,
    reflow,
    reproduce,
    sample,
    samplers,
    schedules,
    sdedit,
    train,
    train_autoencoder,
    train_classifier,
    trajectory,
    tune_steps,
    upscale,
)

#: every command, in the order ``difflab --help`` lists them
COMMANDS = [train, reflow, distill, sample, cascade, train_classifier, train_autoencoder, evaluate, neighbors, reproduce, export, demo,
            samplers, tune_steps, fit_gaussian, posthoc_ema,
            likelihood, schedules, inpaint, sdedit, upscale, interpolate, denoise, trajectory, app]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (no usage banner) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help).\n")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = _Parser(prog="difflab", description="Diffusion models from the papers, on a laptop CPU.")
    p.add_argument("--version", action="version", version="difflab 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for command in COMMANDS:
        parsers[command.NAME] = sub.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(parsers[command.NAME])
    return p, parsers


def _flag_for(parser: argparse.ArgumentParser):
    """How the command names a library parameter: the flag that sets it (``train.grad_accum`` -> ``--grad-accum``,
    ``device`` -> ``--device``), or the parameter's own name where the command has no such flag."""
    flags = set(parser._option_string_actions)

    def name_of(parameter: str) -> str:
        flag = "--" + parameter.rsplit(".", 1)[-1].replace("_", "-")
        return flag if flag in flags else parameter
    return name_of


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as Ctrl-C does: atomic writes drop their
    temporary files, and training says which checkpoint it keeps."""


_finishing = []  # set once main is reporting an outcome: a late SIGTERM then changes nothing


def _terminate(signum, frame):
    if not _finishing:
        raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser, parsers = _parser()
    args = parser.parse_args(argv)
    import signal
    import threading
    import warnings

    from ..errors import DifflabError

    warnings.showwarning = lambda message, category, *rest, **kw: print(f"difflab: warning: {message}", file=sys.stderr)
    execute = {c.NAME: c.execute for c in COMMANDS}[args.command]
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    _finishing.clear()
    try:
        execute(args)
    except DifflabError as e:
        _finishing.append(True)
        print(f"difflab {args.command}: error: {e.render(_flag_for(parsers[args.command]))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: say what is kept; nothing half-written is
        _finishing.append(True)
        kept = getattr(e, "kept", None) or "no output was left half-written"
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"difflab {args.command}: {how}; {kept}.", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:  # the reader of our output went away (difflab samplers | head)
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        _finishing.append(True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
