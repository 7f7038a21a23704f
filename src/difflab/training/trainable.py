"""What :func:`difflab.training.loop.fit` trains: a small object that prepares its data, builds its network,
draws the randomness of one global batch and returns per-example losses with the metrics to log.

A new kind of training (a distillation student, a consistency model, an energy-based model) subclasses
:class:`Trainable`, fills in :meth:`setup`, :meth:`build`, :meth:`draw` and :meth:`loss`, and gets everything
else from the loop: warm-up, accumulation, DDP, autocast, EMA, clipping, logging, checkpoints, exact resume
and the time limit. ``docs/design.md`` shows a whole example.
"""

from __future__ import annotations

from pathlib import Path

import torch


class Trainable:
    """The defaults every trainable shares; the four methods without a default must be given."""

    #: the progress bar's label
    name: str = "train"
    #: the per-example metrics logged as columns of log.csv; "loss" is the loss itself
    metrics: tuple[str, ...] = ("loss",)
    #: the title of loss.png
    loss_title: str = "loss"
    #: the resolved config as asked for, written to the run's config.json
    config: dict
    #: what :meth:`setup` measured (the data normalisation, ...), written beside it to record.json; a loaded run
    #: sees the two merged (:func:`difflab.checkpoint.read_config`)
    record: dict

    def setup(self, device: torch.device) -> int:
        """Load the data (onto ``device``); returns the number of training examples."""
        raise NotImplementedError

    def build(self) -> torch.nn.Module:
        """The network, freshly initialised (the loop seeds the global generator first)."""
        raise NotImplementedError

    def optimizers(self, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
        """The model's optimizer first, then any other whose learning rate follows the same warm-up."""
        tr = self.config["train"]
        return [torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])]

    def begin_step(self, step: int) -> None:
        """Called before each optimizer step (1, 2, ...), before :meth:`draw`: for what changes with the step (the
        noise-level curriculum of consistency training)."""

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        """The global batch of examples ``idx`` with every random draw it needs, from ``generator``."""
        raise NotImplementedError

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-example losses of the examples ``part`` of ``batch`` under the network ``net`` (the model as DDP,
        compile and autocast present it), and the per-example values of the other :attr:`metrics`."""
        raise NotImplementedError

    def after_backward(self, batch: dict, world, device: torch.device) -> None:
        """Called once the whole global batch is back-propagated, before the optimizer step."""

    def after_step(self, step: int) -> None:
        """Called after the optimizer step and the EMA update (a discriminator's own step)."""

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and JSON values of the trainable's own to checkpoint (prefix the tensors' names)."""
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Restore what :meth:`state` saved."""

    def sample_grid(self, ema_model: torch.nn.Module, out: Path, step: int) -> None:
        """A picture of the model at ``step`` (``train.sample_every``); nothing by default."""

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        """What a run that reached its last step writes: a final sample grid, a held-out evaluation."""

    def finished(self, out: Path, step: int) -> bool:
        """Whether :meth:`finish` has written its files (a run killed after its last checkpoint has not)."""
        return True
