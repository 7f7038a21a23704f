"""Progress bars: lively on a terminal, sparse (every 30 s) when written to a log file."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.2 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(iterable, **kwargs)
