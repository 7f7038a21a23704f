"""A network's options and their defaults, read off its own signature, so each default is written once."""

from __future__ import annotations

import inspect


def signature_defaults(cls: type, skip: tuple[str, ...] = ()) -> dict:
    """The keyword options of ``cls.__init__`` with their defaults, JSON-friendly (tuples become lists): each model's
    defaults are written once, in its own signature."""
    out = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        value = None if param.default is param.empty else param.default  # a required option: None until set
        out[name] = list(value) if isinstance(value, tuple) else value
    return out
