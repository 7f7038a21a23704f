"""Helpers shared by the benchmark scripts: train-or-reuse a run, write a markdown table."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def train_or_reuse(preset: str, run_dir: Path, steps: int | None = None, seed: int = 0) -> float:
    """Train ``preset`` into ``run_dir`` unless a finished run is there; return the training seconds."""
    from difflab.config import resolve
    from difflab import checkpoint
    from difflab.training.diffusion import train

    if run_dir.exists() and checkpoint.list_checkpoints(run_dir):
        return float("nan")
    t0 = time.perf_counter()
    train(resolve(preset), run_dir, steps=steps, seed=seed, progress=True)
    return time.perf_counter() - t0


def write_table(name: str, title: str, lines: list[str]) -> Path:
    from difflab.io import write_text

    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])
    text = f"# {title}\n\nCommand: `{command}`  \nDate: {time.strftime('%Y-%m-%d %H:%M')}\n\n" + "\n".join(lines) + "\n"
    path = RESULTS / name
    write_text(path, text)
    print(text)
    return path
