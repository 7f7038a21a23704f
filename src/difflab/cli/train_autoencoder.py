"""``difflab train-autoencoder``: train the KL- or VQ-regularised autoencoder of latent diffusion."""

from __future__ import annotations

import argparse

from ._args import run_trainer, training_arguments

NAME = "train-autoencoder"
HELP = "train the KL- or VQ-regularised autoencoder of latent diffusion"


def add_arguments(p: argparse.ArgumentParser) -> None:
    training_arguments(p, "preset (mnist-pairs-kl, mnist-pairs-vq) or a .yaml/.toml file")


def execute(a) -> None:
    from ..training.autoencoder import resolve, train_autoencoder

    run_trainer(a, resolve, train_autoencoder)
