"""A trained energy-based run as an object: its config, its energy (EMA weights) and sampling from it by MCMC
(:mod:`difflab.ebm.mcmc`; block Gibbs for an RBM), in the data's coordinates."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoint
from ..data.normalization import Normalization
from ..errors import DifflabError
from ..random import GeneratorLike
from . import mcmc
from .networks import build

EBM = "ebm"


def init_range(config: dict) -> tuple[float, float]:
    """The box chains start from, uniform noise over it (model coordinates): [−1, 1] for images, [0, 1] for binary
    pixels, the standardised data's range ± 0.5 for points (recorded at training as ``init_range``)."""
    if "init_range" in config:
        lo, hi = config["init_range"]
        return float(lo), float(hi)
    return (0.0, 1.0) if config["data"].get("binarize") else (-1.0, 1.0)


class EnergyRun:
    """A loaded energy-based run: ``energy(x)`` (model coordinates), ``sample(n, ...)`` (data coordinates)."""

    def __init__(self, config: dict, model: torch.nn.Module, path: Path):
        self.config, self.model, self.path = config, model.eval(), path
        self.norm = Normalization.from_config(config["normalization"])
        self.kind = self.norm.kind
        self.shape = self.norm.shape
        self.is_rbm = config["model"]["type"] == "rbm"

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def noise_conditional(self) -> bool:
        return bool(self.config["model"].get("noise_conditional"))

    def samplers(self) -> list[str]:
        """``gibbs`` for an RBM; the MCMC samplers (at the smallest noise level of a noise-conditional energy),
        ``short-run`` (the training chain itself: x ← x − τ∇E + s z with the run's ``ebm.step_size`` and
        ``ebm.noise_scale``, clamped to [−1, 1] for images; Nijkamp et al. 2019), and for a noise-conditional energy
        ``annealed-langevin`` over its levels."""
        if self.is_rbm:
            return ["gibbs"]
        return list(mcmc.SAMPLERS) + ["short-run"] + (["annealed-langevin"] if self.noise_conditional else [])

    def denoiser(self):
        """A noise-conditional energy as a denoiser on the VE schedule between its smallest and largest noise levels
        (:class:`~difflab.ebm.energy_denoiser.EnergyDenoiser`), for the diffusion samplers."""
        from .. import schedules
        from .energy_denoiser import EnergyDenoiser

        if not self.noise_conditional:
            raise DifflabError("only a noise-conditional energy (model.noise_conditional) is a denoiser over noise levels.")
        e = self.config["ebm"]
        return EnergyDenoiser(self.model, schedules.get("ve", sigma_min=e["sigma"], sigma_max=e["sigma_max"]))

    def sample(self, n: int, sampler: str | None = None, steps: int | None = None, step_size: float | None = None,
               generator: GeneratorLike = None, **options) -> torch.Tensor:
        """n samples by ``steps`` steps of ``sampler`` from uniform noise over :func:`init_range` (the run's sample
        section by default); data coordinates."""
        sc = self.config["sample"]
        sampler, steps = sampler or sc["sampler"], sc["steps"] if steps is None else steps
        if sampler not in self.samplers():
            raise DifflabError(f"sampler {sampler!r} does not apply to this {self.config['model']['type']} run; "
                               f"expected one of {', '.join(self.samplers())}.")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise DifflabError(f"⟨steps⟩ must be a positive integer, got {steps!r}.")
        gen = generator if isinstance(generator, torch.Generator) or generator is None else generator[0]
        lo, hi = init_range(self.config)
        dtype = next(self.model.parameters()).dtype
        x = lo + (hi - lo) * torch.rand((n, *self.shape), generator=gen, dtype=dtype)
        if self.is_rbm:
            if options or step_size is not None:
                raise DifflabError("block Gibbs sampling of an RBM takes no step size or options.")
            with torch.no_grad():
                x = self.model.gibbs(torch.bernoulli(x, generator=gen), steps, generator=gen)
                x = self.model.visible_given_hidden(torch.bernoulli(self.model.hidden_given_visible(x), generator=gen))
            return x.reshape(n, *self.shape)
        if sampler == "annealed-langevin":  # Song & Ermon 2019, Algorithm 1, over the energy's noise levels
            from ..samplers import sample

            if step_size is not None:
                options["step_lr"] = step_size
            x = sample(self.denoiser(), x.shape, sampler="langevin", steps=steps, x_T=x, discretization="logsnr",
                       generator=gen, **options)
            return self.norm.to_data(x)
        if sampler == "short-run":
            from .contrastive import short_run_langevin

            e = self.config["ebm"]
            noise = torch.randn((steps, *x.shape), generator=gen, dtype=dtype)
            clamp = (-1.0, 1.0) if self.kind == "image" else None
            x = short_run_langevin(self.model, x, noise, e["step_size"] if step_size is None else step_size,
                                   e["noise_scale"], clamp)
            return self.norm.to_data(x)
        step_size = sc["step_size"] if step_size is None else step_size
        energy = self.model
        if self.noise_conditional:  # the MCMC samplers target the smallest level's density
            sigma = self.config["ebm"]["sigma"]
            energy = lambda v: self.model(v, sigma)  # noqa: E731
        chain = mcmc.get(sampler)(mcmc.energy_log_prob(energy), x, steps, step_size, generator=gen, **options)
        self.last_acceptance = chain.acceptance
        return self.norm.to_data(chain.samples)


def is_ebm_run(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    import json

    try:
        return json.loads(cfg.read_text()).get("kind") == EBM
    except (json.JSONDecodeError, AttributeError):
        return False


def load(path: str | Path, weights: str = "ema") -> EnergyRun:
    """The energy-based run in ``path`` with its newest valid checkpoint's ``weights`` (ema or model)."""
    path = Path(path)
    config = checkpoint.read_config(path, "an energy-based run")
    if config.get("kind") != EBM:
        raise DifflabError(f"{str(path)!r} is not an energy-based run (its config has no \"kind\": \"ebm\").")
    model = build(config["model"])
    checkpoint.load_latest(model, path, weights=weights, what="energy model")
    return EnergyRun(config, model, path)
