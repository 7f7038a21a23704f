"""``difflab train-autoencoder``: train the KL- or VQ-regularised autoencoder of latent diffusion."""

from __future__ import annotations

import argparse

from ._args import check_resumable, training_arguments

NAME = "train-autoencoder"
HELP = "train the KL- or VQ-regularised autoencoder of latent diffusion"


def add_arguments(p: argparse.ArgumentParser) -> None:
    training_arguments(p, "preset (mnist-pairs-kl, mnist-pairs-vq) or a .yaml/.toml file")


def execute(a) -> None:
    from ..training.autoencoder import resolve, train_autoencoder

    check_resumable(a)
    train_autoencoder(resolve(a.config), a.out, steps=a.steps, seed=a.seed, resume=a.resume, device=a.device,
                      progress=not a.no_progress, max_minutes=a.max_minutes)
