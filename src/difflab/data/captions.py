"""Captioned two-digit images: two MNIST digits side by side on a 28 x 56 canvas, with a caption
that names each digit and its position, "a seven on the left and a two on the right".

Some digit pairs are held out of training to measure generalisation to unseen combinations: the
pairs (a, b) (a on the left) with (a + 2b) mod 10 = 0, one for each right digit b — (0, 0), (8, 1),
(6, 2), (4, 3), (2, 4), (0, 5), (8, 6), (6, 7), (4, 8), (2, 9). Every digit still appears on each
side in training; only these combinations are unseen. The train split draws only the other 90
pairs from MNIST's train images; the test split draws all 100 pairs from MNIST's test images.
"""

from __future__ import annotations

import torch

from difflab.errors import DifflabError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: every word a caption may use
VOCABULARY = ("a", "an", "on", "the", "left", "and", "right", *NUMBER_WORDS)
CANVAS = (28, 56)

__all__ = ["NUMBER_WORDS", "VOCABULARY", "caption", "parse_caption", "is_held_out", "held_out_pairs", "seen_pairs",
           "load_pairs"]


def _article(word: str) -> str:
    return "an" if word == "eight" else "a"


def caption(left: int, right: int) -> str:
    """The caption of a canvas with digit ``left`` on the left and ``right`` on the right."""
    a, b = NUMBER_WORDS[left], NUMBER_WORDS[right]
    return f"{_article(a)} {a} on the left and {_article(b)} {b} on the right"


def parse_caption(text: str) -> tuple[int, int] | None:
    """The (left, right) digits a caption names, or None when it does not follow the caption form."""
    words = text.lower().split()
    if len(words) != 11 or words[2:5] != ["on", "the", "left"] or words[5] != "and" or words[8:] != ["on", "the", "right"]:
        return None
    if words[1] not in NUMBER_WORDS or words[7] not in NUMBER_WORDS:
        return None
    left, right = NUMBER_WORDS.index(words[1]), NUMBER_WORDS.index(words[7])
    return (left, right) if text.lower().split() == caption(left, right).split() else None


def is_held_out(left: int, right: int) -> bool:
    """Whether the pair is held out of training: (left + 2 right) mod 10 = 0."""
    return (left + 2 * right) % 10 == 0


def held_out_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10) for b in range(10) if is_held_out(a, b)]


def seen_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10) for b in range(10) if not is_held_out(a, b)]


def load_pairs(split: str = "train", num: int | None = None, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``num`` canvases (default 60000 train / 10000 test): images (N, 1, 28, 56) in [0, 1], the digit
    pairs (N, 2) and the captions. Pair i is drawn uniformly from the split's pairs, then one MNIST
    image of each digit uniformly from the split, by a generator seeded with ``seed`` (the test split
    with ``seed`` + 1), so the set is the same on every machine."""
    from difflab.data.images import load_mnist

    if split not in ("train", "test"):
        raise DifflabError(f"option split={split!r} must be 'train' or 'test'")
    n = (60000 if split == "train" else 10000) if num is None else num
    images, labels = load_mnist(split, None)
    allowed = torch.tensor(seen_pairs() if split == "train" else [(a, b) for a in range(10) for b in range(10)])
    gen = torch.Generator().manual_seed(seed + (split == "test"))
    pairs = allowed[torch.randint(len(allowed), (n,), generator=gen)]
    by_digit = [torch.nonzero(labels == d).flatten() for d in range(10)]
    picks = []
    for side in (0, 1):
        u = torch.rand(n, generator=gen)
        picks.append(torch.stack([by_digit[d][int(u[i] * len(by_digit[d]))] for i, d in enumerate(pairs[:, side].tolist())]))
    canvas = torch.cat([images[picks[0]], images[picks[1]]], dim=-1)
    return canvas, pairs, [caption(a, b) for a, b in pairs.tolist()]
