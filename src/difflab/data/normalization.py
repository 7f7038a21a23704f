"""The map between a dataset's own coordinates and the coordinates a model works in."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalization:
    """model = (data − shift) / scale, per feature (toys) or for every pixel (images)."""

    kind: str            # "toy" or "image"
    shape: tuple         # per-example shape, (2,) or (C, H, W)
    shift: list          # one value per feature for toys, [0.5] for images
    scale: float

    @classmethod
    def fit(cls, kind: str, data: torch.Tensor) -> "Normalization":
        shape = tuple(data.shape[1:])
        if kind == "image":
            return cls(kind, shape, [0.5], 0.5)
        shift = data.double().mean(0)
        scale = float((data.double() - shift).std(0).mean())
        return cls(kind, shape, shift.tolist(), scale)

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.tensor(self.shift, dtype=x.dtype, device=x.device)
        return s.reshape(-1, *([1] * (x.ndim - 2))) if self.kind == "image" else s

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._shift(x)) / self.scale

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self._shift(x)
        return x.clamp(0, 1) if self.kind == "image" else x

    def to_config(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape), "shift": list(self.shift), "scale": self.scale}

    @classmethod
    def from_config(cls, cfg: dict) -> "Normalization":
        return cls(cfg["kind"], tuple(cfg["shape"]), list(cfg["shift"]), float(cfg["scale"]))
