"""Typed configuration sections: one dataclass per section of a config file, each default written once, in its
field. A config travels as the JSON-able mapping that ``config.json`` holds; :func:`defaults` gives a section's
mapping of defaults and :func:`read` the typed object of a completed section. Every trainer's ``train`` section
shares :class:`LoopSettings`, the options of the one training loop that have the same default everywhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from .errors import DifflabError


def defaults(cls) -> dict:
    """The section's keys with their default values (a fresh copy)."""
    out = {}
    for f in fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def read(cls, section: dict, where: str):
    """The typed object of a completed section mapping; an unknown key is named with the section ``where``."""
    names = {f.name for f in fields(cls)}
    for key in section:
        if key not in names:
            raise DifflabError(f"unknown config key '{where}.{key}'; expected one of {', '.join(sorted(names))}.")
    return cls(**{k: v for k, v in section.items() if k in names})


@dataclass(kw_only=True)
class LoopSettings:
    """What every trainer's ``train`` section may set beyond its own keys: the run options (bf16 autocast,
    gradient accumulation, ``torch.compile``, channels-last) and how often to draw a sample grid (0: at the end)."""

    precision: str = "fp32"
    grad_accum: int = 1
    compile: bool = False
    channels_last: bool = False
    sample_every: int = 0


RUN_OPTIONS = ("precision", "grad_accum", "compile", "channels_last")


@dataclass(kw_only=True)
class LoopSection:
    """The keys of every trainer's ``train`` section that the one loop reads; a trainer's section changes only the
    defaults that differ for it."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 50
    save_every: int = 1000
    keep: int = 2
    #: post-hoc EMA (Karras et al. 2024): the lengths σ_rel of the power-function averages tracked, [] for none, and
    #: the steps between their snapshots (0: with every checkpoint, train.save_every)
    posthoc_ema: list = field(default_factory=list)
    posthoc_every: int = 0


# --- the diffusion trainer's config (difflab train) ---------------------------------------------------------------

@dataclass
class DatasetSection:
    """Which dataset, where from, at what size, and how many examples (None: the loader's defaults)."""

    name: str | None = None
    root: str | None = None
    image_size: int | None = None
    channels: int | None = None
    num: int | None = None


@dataclass
class DataSection(DatasetSection):
    low_res_factor: int | None = None


@dataclass
class DiffusionSection:
    formulation: str | None = None  # ddpm, edm or flow (difflab.formulations); None: implied by the keys below
    schedule: str = "linear"
    T: int = 1000
    parameterization: str = "eps"
    schedule_params: dict = field(default_factory=dict)
    loss: str = "simple"
    learned_variance: bool = False
    vlb_weight: float = 0.001
    weighting: str = "none"
    min_snr_gamma: float = 5.0
    sigma_data: float = 0.5
    ot_pairing: bool = False


@dataclass(kw_only=True)
class TrainSection(LoopSection, LoopSettings):
    num_samples: int = 64
    label_dropout: float = 0.1
    timestep_sampler: str = "uniform"


@dataclass
class SampleSection:
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    clip: bool = True
    #: the discretization the sampler uses when none is asked for (None: trailing / logsnr, see samplers.sample)
    discretization: str | None = None
    #: σ̃ = σ/α below which the network takes over from the data's Gaussian (difflab.data_gaussian); None: off
    gaussian_start: float | None = None


# --- the noise-aware classifier's config (difflab train-classifier) ------------------------------------------------

#: the classifier's data section: the diffusion trainer's without SR3's ``low_res_factor``
ClassifierDataSection = DatasetSection


@dataclass
class ClassifierDiffusionSection:
    schedule: str = "linear"
    T: int = 1000
    schedule_params: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class ClassifierTrainSection(LoopSection):
    lr: float = 3e-4
    weight_decay: float = 0.05
    eval_num: int = 1000


# --- the autoencoder's config (difflab train-autoencoder) ----------------------------------------------------------

@dataclass
class AutoencoderDataSection:
    name: str = "mnist-pairs"
    num: int | None = None


@dataclass
class AutoencoderLossSection:
    reconstruction: str = "l1"
    kl_weight: float = 1e-5
    commitment_weight: float = 0.25
    disc_weight: float = 0.0
    disc_start: int = 0


@dataclass(kw_only=True)
class AutoencoderTrainSection(LoopSection):
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    save_every: int = 500
    eval_num: int = 1000


# --- the energy-based model's config (difflab train with an -ebm or -rbm preset) ---------------------------------

@dataclass
class EBMDataSection(DatasetSection):
    binarize: bool = False  # images as {0, 1} pixels (> 0.5), for the RBM


@dataclass
class EBMSection:
    """How an energy model learns (:mod:`difflab.training.ebm`): contrastive divergence with MCMC negatives, or one of
    the score-matching estimators (exact, sliced, sliced-vr, denoising)."""

    objective: str = "cd"
    chain_steps: int = 20       # K: Langevin steps (Gibbs sweeps for an RBM) per training step
    step_size: float = 0.01     # Langevin τ of x ← x − τ∇E + s z
    noise_scale: float | None = None  # s; None: √(2τ), Langevin's own
    buffer: int = 10000         # persistent chains kept; 0: every chain starts afresh, from ``init``
    init: str = "noise"         # where fresh chains start: noise (short-run; Nijkamp et al. 2019) or data (CD-k; Hinton 2002)
    reinit: float = 0.05        # share of chains restarted from noise
    alpha: float = 0.1          # weight of the energy-magnitude regulariser α (E⁺² + E⁻²)
    sigma: float = 0.1          # noise level of denoising score matching (the smallest, for a noise-conditional energy)
    sigma_max: float | None = None  # a noise-conditional energy's largest level (σ log-uniform in [sigma, sigma_max])
    projections: int = 1        # random directions of sliced score matching


@dataclass(kw_only=True)
class EBMTrainSection(LoopSection, LoopSettings):
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    ema_decay: float = 0.99
    num_samples: int = 1000
    eval_num: int = 1000


@dataclass
class EBMSampleSection:
    """How ``difflab sample`` and the training grids draw from the energy: an MCMC sampler of
    :mod:`difflab.ebm.mcmc` (``gibbs`` for an RBM) from uniform noise over the data's range."""

    sampler: str = "langevin"
    steps: int = 500
    step_size: float = 0.001
