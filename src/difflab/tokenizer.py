"""A word-level tokenizer over a fixed vocabulary (the caption vocabulary of a captioned dataset).

Text is lower-cased and split on white space (commas and full stops are dropped). Id 0 is the
padding token, id 1 the unknown-word token, ids 2.. the vocabulary in its given order. A prompt is
encoded to ``context_length`` ids: its words, then padding. The empty sequence (all padding) is the
null prompt of classifier-free guidance. ``strict=True`` (prompts from a user) refuses unknown words,
empty text and text longer than the context instead of mapping, or cutting, them.
"""

from __future__ import annotations

import torch

from .errors import DifflabError

PAD, UNK = "<pad>", "<unk>"


class WordTokenizer:
    """``encode(text) -> ids`` and ``decode(ids) -> text``, round-trip for text of known words."""

    def __init__(self, vocabulary, context_length: int):
        words = list(vocabulary)
        if len(set(words)) != len(words) or PAD in words or UNK in words or not all(isinstance(w, str) and w
                                                                                    for w in words):
            raise DifflabError("a tokenizer vocabulary must be distinct non-empty words, without <pad> and <unk>.")
        if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
            raise DifflabError(f"the tokenizer's context length must be a positive integer, got {context_length!r}.")
        self.vocabulary = words
        self.context_length = context_length
        self.itos = [PAD, UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @property
    def size(self) -> int:
        return len(self.itos)

    @staticmethod
    def words(text: str) -> list[str]:
        return text.lower().replace(",", " ").replace(".", " ").split()

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """The ids of ``text``'s words, padded to the context length. Unknown words become <unk> and
        words beyond the context are cut, unless ``strict``, which refuses them (and empty text)."""
        if not isinstance(text, str):
            raise DifflabError(f"a prompt must be text, got {type(text).__name__}.")
        words = self.words(text)
        if strict:
            if not words:
                raise DifflabError("the prompt is empty; describe the image, e.g. "
                                   "\"a seven on the left and a two on the right\".")
            unknown = [w for w in words if w not in self.stoi or w in (PAD, UNK)]
            if unknown:
                raise DifflabError(f"the prompt uses the unknown word{'s' * (len(unknown) > 1)} "
                                   f"{', '.join(repr(w) for w in unknown)}; the model knows only: {' '.join(self.vocabulary)}.")
            if len(words) > self.context_length:
                raise DifflabError(f"the prompt has {len(words)} words but the model reads at most {self.context_length}.")
        ids = [self.stoi.get(w, 1) if w not in (PAD, UNK) else 1 for w in words][: self.context_length]
        return ids + [0] * (self.context_length - len(ids))

    def decode(self, ids) -> str:
        """The words of ``ids``, padding dropped, unknown words shown as <unk>."""
        return " ".join(self.itos[int(i)] for i in ids if int(i) != 0)

    def batch(self, texts, strict: bool = False) -> torch.Tensor:
        """int64 ids (B, context_length) of a list of texts."""
        return torch.tensor([self.encode(t, strict) for t in texts], dtype=torch.long).reshape(-1, self.context_length)

    def to_config(self) -> dict:
        return {"vocabulary": list(self.vocabulary), "context_length": self.context_length}

    @classmethod
    def from_config(cls, cfg: dict) -> "WordTokenizer":
        return cls(cfg["vocabulary"], cfg["context_length"])
