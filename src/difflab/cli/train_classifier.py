"""``difflab train-classifier``: train the noise-aware classifier of classifier guidance."""

from __future__ import annotations

import argparse

from ._args import run_trainer, training_arguments

NAME = "train-classifier"
HELP = "train the noise-aware classifier of classifier guidance"


def add_arguments(p: argparse.ArgumentParser) -> None:
    training_arguments(p, "preset (digits-classifier, mnist-classifier, fashion-mnist-classifier) or a .yaml/.toml file")


def execute(a) -> None:
    from ..training.classifier import resolve, train_classifier

    run_trainer(a, resolve, train_classifier)
