"""The networks: MLP for 2-D toys and the DDPM U-Net, built from a JSON-able config.

``build_model({"type": "unet", "image_size": 8, ...})`` returns the network; missing options
take the defaults of the network's own signature (:data:`MODEL_DEFAULTS`), and :func:`complete_config` returns the full config
(to save as ``config.json`` beside the weights).
"""

from __future__ import annotations

import copy

from torch import nn

from difflab.errors import DifflabError
from difflab.models.embedding import timestep_embedding
from difflab.models.foreign import DiffusersUNet
from difflab.models.mlp import MLP
from difflab.models.options import signature_defaults
from difflab.models.text_unet import TextConditionedUNet
from difflab.models.unet import UNet

__all__ = ["MLP", "UNet", "MODEL_DEFAULTS", "build_model", "complete_config", "signature_defaults", "timestep_embedding"]

_CLASSES: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet, "text-unet": TextConditionedUNet,
                                        "diffusers-unet2d": DiffusersUNet}

#: Model type -> its default keyword arguments, read off the networks' signatures.
MODEL_DEFAULTS: dict[str, dict] = {"mlp": signature_defaults(MLP), "unet": signature_defaults(UNet)}
#: a U-Net with cross-attention to a text encoder's tokens (:mod:`difflab.models.text_unet`)
# (its context_dim is the text encoder's width)
MODEL_DEFAULTS["text-unet"] = {**signature_defaults(UNet, skip=("context_dim",)), **signature_defaults(TextConditionedUNet)}
#: a diffusers UNet2DModel (:mod:`difflab.models.foreign`; a diffusers model folder loaded by difflab.load)
MODEL_DEFAULTS["diffusers-unet2d"] = signature_defaults(DiffusersUNet)


def complete_config(config: dict) -> dict:
    """Return ``config`` with every option of its type filled in from :data:`MODEL_DEFAULTS`.

    Raises DifflabError for a missing or unknown ``type`` or an unknown option.
    """
    if not isinstance(config, dict):
        raise DifflabError(f"Model config must be a dict, got {type(config).__name__}.")
    kind = config.get("type")
    if kind not in MODEL_DEFAULTS:
        raise DifflabError(
            f"Model config key 'type' = {kind!r} is unknown; valid types are {sorted(MODEL_DEFAULTS)}."
        )
    defaults = MODEL_DEFAULTS[kind]
    for key in config:
        if key != "type" and key not in defaults:
            raise DifflabError(
                f"Model config key '{key}' is not an option of type '{kind}'; valid keys are "
                f"{['type', *defaults]}."
            )
    full = {"type": kind, **copy.deepcopy(defaults)}
    full.update({k: copy.deepcopy(v) for k, v in config.items() if k != "type"})
    return full


def build_model(config: dict) -> nn.Module:
    """Build an MLP (``{"type": "mlp", ...}``) or U-Net (``{"type": "unet", ...}``) from a config.

    Options not given take :data:`MODEL_DEFAULTS`. Unknown types or keys and bad values raise
    DifflabError naming the key.
    """
    full = complete_config(config)
    kind = full.pop("type")
    return _CLASSES[kind](**full)
