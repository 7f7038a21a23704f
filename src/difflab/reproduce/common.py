"""What the reproductions share: a context (where to write, where runs live, quick or full), training or
reusing a run, drawing samples with per-sample seeds, scoring them, and writing the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Context:
    name: str
    out: Path
    runs: Path
    quick: bool
    command: str

    def __post_init__(self):
        self.started = time.perf_counter()


def run_or_train(ctx: Context, run_name: str, config: dict, steps: int):
    """Load ``ctx.runs / run_name`` if it holds a finished checkpoint, else train ``config`` there for ``steps``
    steps (fewer with ``--quick``). Returns (the loaded run, whether it was reused)."""
    from ..run import load
    from .. import checkpoint
    from ..training.diffusion import train

    path = ctx.runs / run_name
    if path.exists() and checkpoint.list_checkpoints(path):
        return load(path), True
    print(f"[{ctx.name}] training {run_name} for {steps} steps into {path}")
    train(config, path, steps=steps, seed=0, progress=True)
    return load(path), False


def preset(name: str, **sections) -> dict:
    """A preset's config with some sections updated, e.g. ``preset("digits", diffusion={"schedule": "linear"})``."""
    from ..config import resolve

    return resolve({"preset": name, **sections})


def draw(run, num: int, seed: int = 0, batch: int = 500, **sample_options) -> torch.Tensor:
    """``num`` samples in data coordinates, sample i from seed ``seed * 1_000_003 + i`` alone, so every setting
    of a table starts from the same noise."""
    from ..random import per_sample_generators

    out = []
    for lo in range(0, num, batch):
        n = min(batch, num - lo)
        gens = per_sample_generators(seed, lo, n, num)
        out.append(run.sample(n, generator=gens, **sample_options))
    return torch.cat(out)


def scores(samples: torch.Tensor, dataset: str, num_ref: int, metrics: str = "fd,pr,is") -> dict:
    """FD, precision, recall and IS of ``samples`` in the dataset judge's features, with short keys."""
    from ..evaluate import evaluate_samples

    s = evaluate_samples(samples, dataset, metrics, num_ref=num_ref)
    tag = s["extractor"]
    short = {"fd": f"FD[{tag}]", "precision": f"precision[{tag}]", "recall": f"recall[{tag}]", "is": f"IS[{tag}]",
             "kid": f"KID[{tag}]"}
    return {k: s[v] for k, v in short.items() if v in s} | {"extractor": tag}


def write_report(ctx: Context, title: str, lines: list[str]) -> Path:
    """``<out>/<name>.md``: the title, the command that regenerates it, date and wall time, then ``lines``."""
    from ..io import write_text

    minutes = (time.perf_counter() - ctx.started) / 60
    head = [f"# {title}", "", f"Command: `{ctx.command}`  ",
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}, {minutes:.1f} min on this machine (CPU, "
            f"{torch.get_num_threads()} threads){' — QUICK MODE: too little training to judge the claim' if ctx.quick else ''}", ""]
    path = ctx.out / f"{ctx.name}.md"
    write_text(path, "\n".join(head + lines) + "\n")
    print(f"[{ctx.name}] wrote {path}")
    return path


def figure_path(ctx: Context, suffix: str = "") -> Path:
    ctx.out.mkdir(parents=True, exist_ok=True)
    return ctx.out / f"{ctx.name}{suffix}.png"
