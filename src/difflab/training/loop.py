"""What every trainer here shares (diffusion models, noise-aware classifiers, autoencoders): shuffled
minibatches, the resumable state saved with the weights, learning-rate warm-up, the clipped optimizer
step, and the CSV log that a resumed run continues.

A run killed at any moment and resumed ends bit for bit where an uninterrupted one does because the
state holds everything that decides the next step: the weights and their EMA, the optimizer's moments,
the data order and position, the two generators (data order; noise and timesteps), and the half-filled
log window. :class:`TrainingState` writes and reads all of it; a trainer adds its own tensors (a
timestep sampler's history, a discriminator) under its own prefixes.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DifflabError
from . import checkpoint


class DataOrder:
    """Shuffled minibatches, epoch after epoch, from its own generator; its state is saveable."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        idx = []
        need = self.batch_size
        while need > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += take.numel()
            need -= take.numel()
            idx.append(take)
        return torch.cat(idx)


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str = "opt.") -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors ``<prefix><param id>.<key>`` (for safetensors) and its param groups
    (for JSON)."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{prefix}{pid}.{key}"] = torch.as_tensor(value)
    return tensors, sd["param_groups"]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list, prefix: str = "opt.") -> dict:
    """The optimizer state dict that :func:`flatten_optimizer` flattened (other tensors are ignored)."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix):
            continue
        pid, key = name[len(prefix):].split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": groups}


def check_run_length(steps: int | None, max_minutes: float | None) -> None:
    """Refuse a ``--steps`` that is not a positive integer and a ``--max-minutes`` that is not a positive number."""
    from ..config import check_integer, check_number

    if steps is not None:
        check_integer(steps, "--steps")
    if max_minutes is not None:
        check_number(max_minutes, "--max-minutes", positive=True)


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """A seed for the global generator (dropout) at one step of one rank, so a resumed run, on any
    number of processes, draws what an uninterrupted one does."""
    return ((seed * 1_000_003 + step) * 65_537 + rank) & 0x7FFF_FFFF_FFFF_FFFF


def warmup_lr(lr: float, warmup: int, step: int) -> float:
    """The learning rate at ``step`` (1-based) of a linear warm-up over ``warmup`` steps to ``lr``, then constant
    (Ho et al. 2020, Appx. B: 5,000 warm-up steps; Goyal et al. 2017, Sec. 2.2)."""
    return lr * min(1.0, step / warmup) if warmup > 0 else lr


def set_lr(lr: float, *optimizers: torch.optim.Optimizer) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def clipped_step(model: torch.nn.Module, opt: torch.optim.Optimizer, grad_clip: float) -> float:
    """Clip the gradients' global norm to ``grad_clip`` (0: no clipping), take the optimizer step; returns the
    norm before clipping."""
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    opt.step()
    return norm


@dataclass
class TrainingState:
    """The weights, their EMA (None on the processes that keep none), the optimizer, the generators of the data
    order and of the noise, and the data order itself: what :meth:`save` writes and :meth:`restore` reads."""

    model: torch.nn.Module
    ema: object
    opt: torch.optim.Optimizer
    data_gen: torch.Generator
    noise_gen: torch.Generator
    order: DataOrder

    def save(self, out: Path, step: int, window: list, keep: int, tensors: dict | None = None,
             state: dict | None = None) -> None:
        """A checkpoint of this state at ``step`` with the log ``window``; ``tensors`` and ``state`` add a
        trainer's own tensors and JSON values."""
        opt_tensors, groups = flatten_optimizer(self.opt)
        trainer = {**opt_tensors, "rng.data": self.data_gen.get_state(), "rng.noise": self.noise_gen.get_state(),
                   "data.perm": self.order.perm, **(tensors or {})}
        meta = {"param_groups": groups, "data_pos": self.order.pos, "ema_updates": self.ema.updates,
                "log_window": window, **(state or {})}
        checkpoint.save(out, step, {"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                                    "trainer": trainer}, meta, keep=keep)

    def restore(self, ckpt: Path) -> tuple[int, dict, dict]:
        """Load the checkpoint ``ckpt`` into this state; returns (its step, its JSON state, its trainer tensors)
        for what a trainer keeps beside (the log window, a sampler's history)."""
        state = json.loads((ckpt / "state.json").read_text())
        self.model.load_state_dict(checkpoint.load_tensors(ckpt, "model"))
        if self.ema is not None:
            self.ema.model.load_state_dict(checkpoint.load_tensors(ckpt, "ema"))
            self.ema.updates = state["ema_updates"]
        extra = checkpoint.load_tensors(ckpt, "trainer")
        self.opt.load_state_dict(unflatten_optimizer(extra, state["param_groups"]))
        self.data_gen.set_state(extra["rng.data"])
        self.noise_gen.set_state(extra["rng.noise"])
        self.order.perm, self.order.pos = extra["data.perm"].long(), state["data_pos"]
        return state["step"], state, extra


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, given: dict, resumable=frozenset()) -> list[str]:
    """Dotted keys whose values differ between a run's config and another one, the ``resumable`` keys (those a
    resumed run may change, such as its length) aside."""
    a = _flat({k: v for k, v in saved.items() if k not in ("normalization", "preset")})
    b = _flat({k: v for k, v in given.items() if k not in ("normalization", "preset")})
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in resumable:
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            show = lambda v: "unset" if v is missing else json.dumps(v)  # noqa: E731
            diffs.append(f"{key} (run: {show(va)}, given: {show(vb)})")
    return diffs


def prepare_run_config(out: Path, config: dict | None, resume: bool, seed: int | None, *, command: str,
                       resumable=frozenset(), read=None, check_saved=None) -> dict:
    """The config to train the run ``out`` with: on resume the run's own (completed by ``read``, refused by
    ``check_saved`` if of another kind, and checked against ``config`` if given: only the ``resumable`` keys may
    differ), else a copy of ``config`` for a new run directory. Reads only, so every rank can run it before any
    rank writes. ``command`` names the command in the error for a missing config."""
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            if not out.exists():
                raise DifflabError(f"cannot resume: run directory {str(out)!r} does not exist.")
            raise DifflabError(f"cannot resume: {str(out)!r} is not a run directory (no config.json).")
        try:
            saved = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            raise DifflabError(f"cannot resume: config file {str(cfg_path)!r} is corrupt (not valid JSON).") from None
        saved = saved if read is None else read(saved)
        if check_saved is not None:
            check_saved(saved)
        if config is not None:
            diffs = config_differences(saved, config, resumable)
            if diffs:
                more = f" and {len(diffs) - 8} more" if len(diffs) > 8 else ""
                raise DifflabError(f"cannot resume {str(out)!r} with a different config: {'; '.join(diffs[:8])}{more}. "
                                   "Pass the preset or config file the run was started with, or choose a new --out.")
        if seed is not None and seed != saved.get("seed"):
            raise DifflabError(f"cannot resume {str(out)!r} with --seed {seed}: the run was started with seed "
                               f"{saved.get('seed')}; leave --seed out when resuming.")
        return saved
    if config is None:
        raise DifflabError(f"{command} needs a config (a preset name, a config file or a dict) unless it resumes a run.")
    if out.exists() and not out.is_dir():
        raise DifflabError(f"--out {str(out)!r} is a file, not a run directory.")
    if out.exists() and ((out / "config.json").exists() or checkpoint.list_checkpoints(out)):
        raise DifflabError(f"run directory {str(out)!r} already holds a run; pass --resume to continue it or choose another --out.")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise DifflabError(f"cannot create the run directory {str(out)!r}: {str(parent)!r} is not a writable directory.")
    config = copy.deepcopy(config)
    if seed is not None:
        config["seed"] = seed
    return config


def make_run_dir(out: Path) -> None:
    """Create the run directory ``out`` (and its parents), with one clear error when the file system refuses."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DifflabError(f"cannot create the run directory {str(out)!r} ({e.strerror or e}).") from None


def remove_stale_temp_files(out: Path) -> None:
    """Temporary files of atomic writes that a killed run left behind (config, log, plots, grids)."""
    patterns = [(out, ".config.json.*"), (out, ".log.csv.*"), (out, ".loss.png.*"), (out / "samples", ".step_*")]
    for folder, pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_file() and ".tmp" in p.name:
                p.unlink(missing_ok=True)


def open_log(csv_path: Path, step: int, header: str):
    """``log.csv`` opened for appending at ``step``: the rows a resumed run will write again (after ``step``)
    and any row a killed process left half-written are dropped; a new log starts with ``header``."""
    width = header.count(",") + 1

    def keep(line: str) -> bool:
        fields = line.split(",")
        if len(fields) != width or not fields[0].isdigit() or int(fields[0]) > step:
            return False
        try:
            [float(f) for f in fields[1:]]
        except ValueError:
            return False
        return True

    from ..io import write_text

    old = csv_path.read_text().splitlines() if csv_path.exists() else []
    write_text(csv_path, "\n".join([header] + [ln for ln in old if keep(ln)]) + "\n")
    return open(csv_path, "a")


__all__ = ["DataOrder", "flatten_optimizer", "unflatten_optimizer", "check_run_length", "dropout_seed", "warmup_lr", "set_lr",
           "clipped_step", "TrainingState", "config_differences", "prepare_run_config", "make_run_dir", "remove_stale_temp_files",
           "open_log"]
