"""Submodules and attributes of a package imported on first use (PEP 562's module ``__getattr__``), so that
``import difflab`` and ``import difflab.metrics`` stay fast and do not import torch until something needs it."""

from __future__ import annotations

import importlib


def exports(package: str, submodules: set[str], attributes: dict[str, tuple[str, str]]):
    """``__all__``, ``__getattr__`` and ``__dir__`` for the package named ``package``: each name of ``submodules`` is
    its submodule, each key of ``attributes`` the attribute ``(module, name)`` of one of them, both imported when
    first asked for."""
    names = sorted(submodules | set(attributes))

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        if name in attributes:
            module, attr = attributes[name]
            return getattr(importlib.import_module(f".{module}", package), attr)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return names

    return names, __getattr__, __dir__
