"""Saved models that are not diffusion runs, loaded without a trainer: the noise-aware classifier of classifier
guidance (``difflab train-classifier``) and the autoencoder of latent diffusion (``difflab train-autoencoder``).
Both are run directories of atomic, checksummed checkpoints (:mod:`difflab.checkpoint`) with a ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint
from .errors import DifflabError

#: ``config.json``'s ``kind`` of an autoencoder run
AUTOENCODER = "autoencoder"


def classifier_schedule(config: dict):
    from . import schedules

    d = config["diffusion"]
    return schedules.get(d["schedule"], d["T"], **d.get("schedule_params", {}))


@dataclass
class ClassifierRun:
    """A trained noise-aware classifier with its config (schedule, normalisation, image shape)."""

    path: Path
    config: dict
    model: torch.nn.Module
    step: int

    @property
    def num_classes(self) -> int:
        return int(self.config["model"]["num_classes"])

    @property
    def shape(self) -> tuple:
        m = self.config["model"]
        return (m["in_channels"], m["image_size"], m["image_size"])

    @property
    def schedule(self):
        return classifier_schedule(self.config)

    def check_fits(self, schedule, shape: tuple, normalization: dict) -> None:
        """Refuse, in one sentence, to guide a model of another image shape, data normalisation or schedule.

        A schedule mismatch is an error, not a warning: the classifier reads the time the network is
        given, which names a different noise level under another schedule, so its gradient would be
        silently wrong."""
        c, h, w = self.shape
        if tuple(shape) != self.shape:
            dims = "x".join(map(str, shape))
            raise DifflabError(f"the classifier in {str(self.path)!r} was trained on {c}x{h}x{w} images but the model "
                               f"makes samples of shape {dims}; train a classifier on the model's data.")
        mine = self.config["normalization"]
        if normalization.get("kind") != "image" or [normalization.get("shift"), normalization.get("scale")] != \
                [mine["shift"], mine["scale"]]:
            raise DifflabError(f"the classifier in {str(self.path)!r} expects images scaled to [-1, 1], but the model "
                               f"works in other coordinates ({normalization.get('kind')}, shift {normalization.get('shift')}, "
                               f"scale {normalization.get('scale')}).")
        ours, theirs = self.schedule.to_config(), schedule.to_config()
        if ours != theirs:
            show = lambda c: ", ".join(f"{k} {v}" for k, v in c.items())  # noqa: E731
            raise DifflabError(f"the classifier in {str(self.path)!r} was trained on another diffusion schedule "
                               f"({show(ours)}) than the model's ({show(theirs)}); train it with the model's "
                               "diffusion section.")


def load_classifier(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> ClassifierRun:
    """The newest valid checkpoint of a classifier run (``weights``: "ema" or "model"), in eval mode."""
    from .models.classifier import build_classifier

    path = Path(path)
    if not path.is_dir():
        raise DifflabError(f"classifier directory {str(path)!r} does not exist.")
    config = checkpoint.read_config(path, "a classifier run")
    if not isinstance(config.get("model"), dict) or config["model"].get("type") != "classifier":
        raise DifflabError(f"{str(path)!r} is a diffusion run, not a classifier; train one with difflab train-classifier.")
    model = build_classifier(config["model"])
    step = checkpoint.load_latest(model, path, weights, "classifier")
    return ClassifierRun(path, config, model.to(device).eval().requires_grad_(False), step)


@dataclass
class AutoencoderRun:
    """A trained autoencoder with its config (data normalisation, latent shape)."""

    path: Path
    config: dict
    model: torch.nn.Module
    step: int

    @property
    def latent_shape(self) -> tuple:
        return tuple(self.config["latent_shape"])

    @property
    def image_shape(self) -> tuple:
        m = self.config["model"]
        return (m["in_channels"], m["image_height"], m["image_width"])


def load_autoencoder(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> AutoencoderRun:
    """The newest valid checkpoint of an autoencoder run, in eval mode, gradients off."""
    from .models.autoencoder import build_autoencoder

    path = Path(path)
    if not path.is_dir():
        raise DifflabError(f"autoencoder run {str(path)!r} does not exist.")
    config = checkpoint.read_config(path, "an autoencoder run")
    if config.get("kind") != AUTOENCODER:
        raise DifflabError(f"{str(path)!r} is not an autoencoder run (made by difflab train-autoencoder).")
    model = build_autoencoder(config["model"])
    step = checkpoint.load_latest(model, path, weights, "autoencoder")
    return AutoencoderRun(path, config, model.to(device).eval().requires_grad_(False), step)
