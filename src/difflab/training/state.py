"""The resumable state of a training run: shuffled minibatches whose order and position are saveable, the
optimizer state flattened for safetensors, and :class:`TrainingState`, which writes and reads everything that
decides the next step (weights, EMA, optimizer moments, data order, the generators), so a run killed at any
moment and resumed ends bit for bit where an uninterrupted one does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checkpoint
from ..errors import DifflabError


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
    posthoc: list = field(default_factory=list)  # the power-function averages of post-hoc EMA, if any

    def save(self, out: Path, step: int, window: list, keep: int, tensors: dict | None = None,
             state: dict | None = None) -> None:
        """A checkpoint of this state at ``step`` with the log ``window``; ``tensors`` and ``state`` add a
        trainer's own tensors and JSON values."""
        opt_tensors, groups = flatten_optimizer(self.opt)
        trainer = {**opt_tensors, "rng.data": self.data_gen.get_state(), "rng.noise": self.noise_gen.get_state(),
                   "data.perm": self.order.perm, **(tensors or {})}
        for i, average in enumerate(self.posthoc):
            trainer.update(average.tensors(f"posthoc.{i}."))
        meta = {"param_groups": groups, "data_pos": self.order.pos, "ema_updates": self.ema.updates,
                "log_window": window, **(state or {})}
        checkpoint.save(out, step, {"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                                    "trainer": trainer}, meta, keep=keep)

    def restore(self, ckpt: Path) -> tuple[int, dict, dict]:
        """Load the checkpoint ``ckpt`` into this state; returns (its step, its JSON state, its trainer tensors)
        for what a trainer keeps beside (the log window, a sampler's history)."""
        state = json.loads((ckpt / "state.json").read_text())
        checkpoint.load_into(self.model, checkpoint.load_tensors(ckpt, "model"), ckpt)
        if self.ema is not None:
            checkpoint.load_into(self.ema.model, checkpoint.load_tensors(ckpt, "ema"), ckpt, "model's EMA")
            self.ema.updates = state["ema_updates"]
        extra = checkpoint.load_tensors(ckpt, "trainer")
        self.opt.load_state_dict(unflatten_optimizer(extra, state["param_groups"]))
        self.data_gen.set_state(extra["rng.data"])
        self.noise_gen.set_state(extra["rng.noise"])
        self.order.perm, self.order.pos = extra["data.perm"].long(), state["data_pos"]
        for i, average in enumerate(self.posthoc):
            if not any(k.startswith(f"posthoc.{i}.") for k in extra):
                raise DifflabError(f"checkpoint {str(ckpt)!r} was written without train.posthoc_ema; resume with the "
                                   "run's own config, or start a new run to track post-hoc EMA.")
            average.load(extra, f"posthoc.{i}.")
        return state["step"], state, extra
