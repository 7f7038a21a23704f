"""A text-conditioned U-Net: the DDPM U-Net with cross-attention to the tokens of a text encoder
(Rombach et al. 2022, Sec. 3.3, Eq. 3: ε_θ(z_t, t, τ_θ(y))).

``model(x, t, y)`` takes the prompt as word ids ``y`` (B, context_length) of the model's own
:class:`~difflab.tokenizer.WordTokenizer` (vocabulary and context length in the config); ``y`` None,
or an all-padding row, is the empty prompt, the null condition of classifier-free guidance. The
text encoder is part of the network, so a run's weights hold both and every denoiser, guidance
wrapper and sampler treats the ids like class labels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difflab.data.captions import VOCABULARY
from difflab.errors import DifflabError
from difflab.models.text_encoder import MiniLMTextEncoder, TransformerTextEncoder
from difflab.models.unet import UNet
from difflab.tokenizer import WordTokenizer

__all__ = ["TextConditionedUNet"]

ENCODERS = ("transformer", "minilm")


class TextConditionedUNet(nn.Module):
    def __init__(self, text_encoder: str = "transformer", text_width: int = 64, text_layers: int = 2, text_heads: int = 4,
                 vocabulary=VOCABULARY, context_length: int = 12, **unet_options):
        super().__init__()
        if text_encoder not in ENCODERS:
            raise DifflabError(f"model option 'text_encoder' = {text_encoder!r} is invalid: expected one of {', '.join(ENCODERS)}.")
        if unet_options.get("num_classes") is not None:
            raise DifflabError("a text-unet is conditioned on prompts; leave model.num_classes out.")
        for name, value in (("text_width", text_width), ("text_layers", text_layers), ("text_heads", text_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DifflabError(f"model option {name!r} = {value!r} is invalid: expected a positive integer.")
        self.tokenizer = WordTokenizer(vocabulary, context_length)
        if text_encoder == "transformer":
            self.text = TransformerTextEncoder(self.tokenizer.size, context_length, text_width, text_layers, text_heads)
        else:
            self.text = MiniLMTextEncoder(self.tokenizer.decode)
        self.unet = UNet(**unet_options, context_dim=self.text.width)
        self.config = {**{k: v for k, v in self.unet.config.items() if k != "context_dim"}, "text_encoder": text_encoder,
                       "text_width": text_width, "text_layers": text_layers, "text_heads": text_heads,
                       "vocabulary": list(vocabulary), "context_length": context_length}
        self.in_channels, self.out_channels = self.unet.in_channels, self.unet.out_channels
        self.num_classes = None

    def null_condition(self, batch: int, device=None) -> Tensor:
        """The empty prompt's ids for ``batch`` samples (all padding)."""
        return torch.zeros(batch, self.tokenizer.context_length, dtype=torch.long, device=device)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        ids = self.null_condition(x.shape[0], x.device) if y is None else torch.as_tensor(y, device=x.device)
        if ids.ndim != 2 or ids.shape[0] != x.shape[0] or ids.dtype.is_floating_point:
            raise DifflabError(f"a text-unet takes prompts as word ids of shape ({x.shape[0]}, "
                               f"{self.tokenizer.context_length}), got {ids.dtype} of shape {tuple(ids.shape)}.")
        context, mask = self.text(ids.long())
        return self.unet(x, t, context=context, context_mask=mask)
