"""Devices and data-parallel training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m difflab train ...`` starts N copies of the trainer; torchrun puts
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. :func:`from_env` reads them
without touching the network, so bad input (a world size that does not divide the batch) is
refused on every rank before any process waits for another; :meth:`World.start` then joins the
process group: gloo on the CPU, NCCL on CUDA.

How the trainer splits the work (see :mod:`difflab.training.diffusion`): every rank draws the same
global batch of indices, timesteps and noise from generators seeded alike, and keeps the slice
``rank * B/N : (rank + 1) * B/N``; DDP averages the gradients, so N processes take the same
optimizer steps as one process with the whole batch, up to float rounding. Rank 0 alone keeps
the EMA weights and writes checkpoints, logs and sample grids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import DifflabError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DifflabError(f"environment variable {name} must be an integer (torchrun sets it), got {value!r}.") from None


@dataclass
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def start(self, device: torch.device) -> None:
        """Join the process group (gloo for the CPU, NCCL for CUDA); a no-op for one process."""
        if not self.distributed or self.started:
            return
        import torch.distributed as dist

        if device.type == "cuda":
            backend = "nccl"
        elif device.type == "cpu":
            backend = "gloo"
        else:
            raise DifflabError(f"torchrun training runs on cpu or cuda, not on {device.type!r}; set ⟨device⟩ to cpu or cuda.")
        if not dist.is_available():  # pragma: no cover - builds without torch.distributed
            raise DifflabError("this build of PyTorch has no torch.distributed; run without torchrun.")
        dist.init_process_group(backend=backend)
        self.started = True

    def barrier(self) -> None:
        if self.started:
            import torch.distributed as dist
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum a few numbers over the ranks (float64); the values themselves with one process."""
        if not self.started:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as DDP sees it (gradients averaged over the ranks); the model itself alone."""
        if not self.started:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def stop(self) -> None:
        if self.started:
            import torch.distributed as dist
            dist.destroy_process_group()
            self.started = False


def from_env() -> World:
    """Rank, world size and local rank from torchrun's environment (rank 0 of 1 without it)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DifflabError(f"RANK={rank} and WORLD_SIZE={world_size} from the environment are inconsistent; launch with torchrun.")
    return World(rank=rank, world_size=world_size, local_rank=local_rank)


def check_split(batch_size: int, world_size: int, grad_accum: int) -> int:
    """The micro-batch each rank feeds the model: B / (N K), or one clear error if it is not whole."""
    if batch_size % world_size:
        raise DifflabError(f"the global batch train.batch_size = {batch_size} cannot be split over {world_size} processes; "
                           f"use a number of processes (torchrun --nproc_per_node) that divides {batch_size}.")
    per_rank = batch_size // world_size
    if per_rank % grad_accum:
        where = f"the per-process batch {per_rank} (train.batch_size {batch_size} / {world_size} processes)" \
            if world_size > 1 else f"train.batch_size = {batch_size}"
        raise DifflabError(f"⟨train.grad_accum⟩ {grad_accum} does not divide {where}; choose a ⟨train.grad_accum⟩ that divides it.")
    return per_rank // grad_accum


def pick_device(name: str | None, world: World) -> torch.device:
    """``cpu``, ``cuda`` (``cuda:<local rank>`` under torchrun), ``cuda:<i>`` or ``mps``; ``None``
    means cuda when available, else cpu."""
    if name is None or name == "":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DifflabError(f"⟨device⟩ must be cpu, cuda, cuda:<index> or mps, got {name!r}.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DifflabError(f"⟨device⟩ {name} asks for CUDA, but PyTorch sees no CUDA GPU here; set ⟨device⟩ to cpu.")
        index = world.local_rank if device.index is None and world.distributed else (device.index or 0)
        if index >= torch.cuda.device_count():
            raise DifflabError(f"⟨device⟩ {name}: this process needs cuda:{index}, but only {torch.cuda.device_count()} GPU(s) are visible.")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DifflabError(f"⟨device⟩ {name} asks for Apple's MPS, which is not available here; set ⟨device⟩ to cpu.")
        return device
    if device.type != "cpu":
        raise DifflabError(f"⟨device⟩ must be cpu, cuda, cuda:<index> or mps, got {name!r}.")
    return device
