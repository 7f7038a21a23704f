"""Low-resolution images and SR3's conditioning input (Saharia et al. 2021, "Image Super-Resolution via
Iterative Refinement", Sec. 2.3): f×f average pooling, bicubic upsampling, and their composition."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DifflabError

Tensor = torch.Tensor


def low_res(x: Tensor, factor: int) -> Tensor:
    """The f×f average-pooled image (the low-resolution input of ``mnist-sr``: 28×28 → 14×14 for f = 2)."""
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise DifflabError(f"images of size {tuple(x.shape[-2:])} cannot be pooled by {factor}: "
                           f"the size must be a multiple of the factor.")
    return F.avg_pool2d(x, factor)


def upsample(x: Tensor, factor: int) -> Tensor:
    """Bicubic upsampling by ``factor`` (``torch.nn.functional.interpolate``, mode ``bicubic``): SR3's conditioning
    input and the baseline it is compared with (Saharia et al. 2021, Sec. 2.3 and Table 1)."""
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)


def condition(x0: Tensor, factor: int) -> Tensor:
    """The SR3 conditioning image of a high-resolution training image: upsample(low_res(x0))."""
    return upsample(low_res(x0, factor), factor)
