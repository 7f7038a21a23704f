"""``difflab train-classifier``: train the noise-aware classifier of classifier guidance."""

from __future__ import annotations

import argparse

from ._args import check_resumable, training_arguments

NAME = "train-classifier"
HELP = "train the noise-aware classifier of classifier guidance"


def add_arguments(p: argparse.ArgumentParser) -> None:
    training_arguments(p, "preset (digits-classifier, mnist-classifier, fashion-mnist-classifier) or a .yaml/.toml file")


def execute(a) -> None:
    from ..training.classifier import resolve, train_classifier

    check_resumable(a)
    train_classifier(resolve(a.config), a.out, steps=a.steps, seed=a.seed, resume=a.resume, device=a.device,
                     progress=not a.no_progress, max_minutes=a.max_minutes)
