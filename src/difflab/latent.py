"""Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"):
the diffusion model learns the latents z = s · E(x) of a trained autoencoder, and a sample is D(z / s).

A diffusion run is a latent one when its config has a ``latent`` section:
``{"autoencoder": RUN_DIR, "scale_factor": null}``. The trainer encodes the data once (the KL
posterior's mean; VQ latents before quantisation, Sec. 3.1), measures the scale factor s = 1 / std(z)
on them, so that the latents have unit variance (Sec. 4.3.2 and Appx. G, "rescale the latent by the
component-wise standard deviation"), and records s and the latent shape in the run's ``record.json``, with
``clip``: the largest |s z| of the data, the range x̂_0 is clipped to when the run samples with
``sample.clip`` — the latent counterpart of clipping pixels to [−1, 1]. It matters at the first steps of
a schedule whose ᾱ_T is almost 0 (cosine: ᾱ_T ≈ 2e-9), where x̂_0 = (z_t − σ_t ε̂)/α_t multiplies any
error of ε̂ by thousands. Denoisers,
guidance and samplers see only latents; :class:`LatentCodec` maps between latents and model
coordinates of the data ([−1, 1] images).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import DifflabError

__all__ = ["scale_factor", "LatentCodec", "load_codec", "encode_dataset"]


def scale_factor(latents: torch.Tensor) -> float:
    """s = 1 / std(z) over every element of the encoded data, in float64 (Rombach et al. 2022, Sec. 4.3.2)."""
    z = latents.detach().double().flatten()
    if z.numel() < 2:
        raise DifflabError("the latent scale factor needs the latents of at least one image with two elements.")
    std = float(z.std())
    if not std > 0:
        raise DifflabError("the autoencoder maps the data to constant latents (standard deviation 0); train it longer.")
    return 1.0 / std


class LatentCodec:
    """The autoencoder of a latent run with its scale factor: ``encode`` images (model coordinates) to
    scaled latents, ``decode`` scaled latents to images."""

    def __init__(self, autoencoder, scale: float, batch_size: int = 500):
        self.autoencoder = autoencoder
        self.scale = float(scale)
        self.batch_size = batch_size

    @property
    def shape(self) -> tuple:
        return tuple(self.autoencoder.latent_shape)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        net = self.autoencoder.model
        return torch.cat([self.scale * net.encode(x[lo:lo + self.batch_size]) for lo in range(0, x.shape[0], self.batch_size)])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        net = self.autoencoder.model
        return torch.cat([net.decode(z[lo:lo + self.batch_size] / self.scale) for lo in range(0, z.shape[0], self.batch_size)])


def check_section(latent: dict) -> dict:
    """The ``latent`` section of a diffusion config, checked: autoencoder (a path), scale_factor and shape (set by training)."""
    if not isinstance(latent, dict):
        raise DifflabError(f"config section 'latent' must be a mapping with 'autoencoder', got {type(latent).__name__}.")
    for key in latent:
        if key not in ("autoencoder", "scale_factor", "shape", "clip"):
            raise DifflabError(f"unknown config key 'latent.{key}'; expected autoencoder, scale_factor, shape, clip.")
    if not isinstance(latent.get("autoencoder"), str) or not latent["autoencoder"]:
        raise DifflabError("latent.autoencoder must name an autoencoder run directory (from difflab train-autoencoder).")
    for key in ("scale_factor", "clip"):
        s = latent.get(key)
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s < float("inf")):
            raise DifflabError(f"latent.{key} must be a positive number, or null to measure it on the data, got {s!r}.")
    return {"autoencoder": latent["autoencoder"], "scale_factor": latent.get("scale_factor"), "shape": latent.get("shape"),
            "clip": latent.get("clip")}


def _load(config: dict, device):
    from .saved import load_autoencoder

    path = Path(config["latent"]["autoencoder"])
    if not path.is_dir():
        raise DifflabError(f"latent.autoencoder {str(path)!r} does not exist; train one with difflab train-autoencoder.")
    return load_autoencoder(path, device=device)


def _check_matches(ae, config: dict) -> None:
    """Refuse, in one sentence, an autoencoder trained on other data than the diffusion run's."""
    ae_data, data = ae.config["data"]["name"], config["data"]["name"]
    if ae_data != data:
        raise DifflabError(f"the autoencoder {str(ae.path)!r} was trained on {ae_data!r} but the diffusion run uses "
                           f"{data!r}; train an autoencoder on the run's data.")
    norm = config.get("normalization")
    if norm is not None and (norm.get("shift"), norm.get("scale")) != (ae.config["normalization"]["shift"],
                                                                     ae.config["normalization"]["scale"]):
        raise DifflabError(f"the autoencoder {str(ae.path)!r} expects images scaled by shift "
                           f"{ae.config['normalization']['shift']} and scale {ae.config['normalization']['scale']}, "
                           f"but the diffusion run uses {norm.get('shift')} and {norm.get('scale')}.")
    shape = config["latent"].get("shape")
    if shape is not None and tuple(shape) != tuple(ae.latent_shape):
        raise DifflabError(f"the diffusion run was trained on latents of shape {tuple(shape)}, but the autoencoder "
                           f"{str(ae.path)!r} makes latents of shape {tuple(ae.latent_shape)}.")


def load_codec(config: dict, device="cpu") -> LatentCodec:
    """The codec of a trained latent run (its scale factor recorded), checked against the run."""
    ae = _load(config, device)
    _check_matches(ae, config)
    if config["latent"].get("scale_factor") is None:
        raise DifflabError("the run's latent.scale_factor is missing; it is measured when the run is trained.")
    return LatentCodec(ae, config["latent"]["scale_factor"])


def encode_dataset(config: dict, dataset, norm, device):
    """Encode a dataset for latent training: returns (the dataset with its latents as data, the latents on
    ``device``, the measured values of the latent section: the scale factor (measured on these latents unless the
    config gives one), the latent shape and the latents' largest magnitude ``clip`` (unless given)), for the
    run's record. The config is not changed."""
    from dataclasses import replace

    latent = check_section(config["latent"])
    ae = _load(config, device)
    _check_matches(ae, config)
    codec = LatentCodec(ae, 1.0)
    z = codec.encode(norm.to_model(dataset.data).to(device))
    scale = latent["scale_factor"] if latent["scale_factor"] is not None else scale_factor(z)
    z = z * scale
    clip = latent["clip"] if latent["clip"] is not None else float(z.abs().max())
    measured = {"scale_factor": scale, "shape": list(ae.latent_shape), "clip": clip}
    return replace(dataset, data=z.cpu()), z, measured
