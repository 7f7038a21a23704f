"""Networks from other libraries, seen as difflab networks: ``network(x, t[, labels]) -> output``.

:class:`DiffusersUNet` holds a diffusers ``UNet2DModel`` (diffusers is imported only when one is built; install the
``difflab[diffusers]`` extra). difflab tells a network the timestep t = 1..T, diffusers' convention is the index
k = t − 1 into its tables (its timestep 0 is difflab's t = 1, the first noisy step), so the adapter passes
``t − timestep_offset`` on.
"""

from __future__ import annotations

import torch
from torch import nn

from difflab.errors import DifflabError


def import_diffusers():
    """The ``diffusers`` module, or one clear error naming the extra that installs it."""
    try:
        import diffusers
    except ImportError:
        raise DifflabError("this model is a diffusers model, and diffusers is not installed; install the extra: "
                           "pip install 'difflab[diffusers]'.") from None
    return diffusers


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` built from its ``unet_config`` (the ``config.json`` of the diffusers folder), called
    as ``network(x, t, labels)`` at diffusers timestep t − ``timestep_offset``.

    ``num_classes``: the real classes of a class-conditional model. difflab's convention (:mod:`difflab.guidance`) is
    that label ``num_classes`` means "no class"; a model exported by difflab has that null label as its last class
    embedding (``num_class_embeds`` = ``num_classes`` + 1); a diffusers model trained without one has
    ``num_classes`` = ``num_class_embeds`` and then needs a class for every sample."""

    def __init__(self, unet_config: dict | None = None, num_classes: int | None = None, timestep_offset: int = 1):
        super().__init__()
        if not isinstance(unet_config, dict):
            raise DifflabError("⟨model.unet_config⟩ must be the diffusers UNet2DModel config (a mapping).")
        diffusers = import_diffusers()
        config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
        try:
            self.unet = diffusers.UNet2DModel.from_config(config)
        except Exception as e:  # diffusers raises ValueError / TypeError / KeyError for configs it cannot build
            raise DifflabError(f"diffusers could not build a UNet2DModel from this config ({type(e).__name__}: "
                               f"{str(e)[:200]}).") from None
        self.timestep_offset = int(timestep_offset)
        self.num_classes = num_classes
        self.num_class_embeds = unet_config.get("num_class_embeds")

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_class_embeds is None:
            labels = None  # an unconditional diffusers model reads no class
        elif labels is None or bool((labels >= self.num_class_embeds).any()):
            raise DifflabError(f"this diffusers model knows {self.num_class_embeds} classes and has no null label, so it "
                               "cannot sample without a class (nor with classifier-free guidance); give a class for "
                               "every sample.")
        k = torch.as_tensor(t, device=x.device).to(torch.float32) - self.timestep_offset
        return self.unet(x, k.expand(x.shape[0]) if k.ndim == 0 else k, class_labels=labels).sample
