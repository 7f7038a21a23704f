"""The energy models a run can hold, built from a JSON-able config like the diffusion networks: ``energy-mlp`` and
``energy-conv`` (:mod:`difflab.models.energy`) and the binary ``rbm`` (:mod:`difflab.ebm.rbm`)."""

from __future__ import annotations

import copy

from torch import nn

from ..errors import DifflabError
from ..models.energy import EnergyConvNet, EnergyMLP
from ..models.options import signature_defaults
from .rbm import RBM

CLASSES: dict[str, type[nn.Module]] = {"energy-mlp": EnergyMLP, "energy-conv": EnergyConvNet, "rbm": RBM}


def complete_config(config: dict) -> dict:
    """The model config with every option of its type filled in; an unknown type or key is named."""
    if not isinstance(config, dict) or config.get("type") not in CLASSES:
        kind = config.get("type") if isinstance(config, dict) else config
        raise DifflabError(f"energy model type {kind!r} is unknown; expected one of {', '.join(CLASSES)}.")
    defaults = signature_defaults(CLASSES[config["type"]])
    for key in config:
        if key != "type" and key not in defaults:
            raise DifflabError(f"model key '{key}' is not an option of type '{config['type']}'; valid keys are "
                               f"{', '.join(['type', *defaults])}.")
    return {"type": config["type"], **copy.deepcopy(defaults), **{k: v for k, v in config.items() if k != "type"}}


def build(config: dict) -> nn.Module:
    full = complete_config(config)
    return CLASSES[full.pop("type")](**full)
