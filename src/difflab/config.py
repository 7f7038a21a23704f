"""Run configurations: presets, YAML/TOML files, and their validation.

A config is a nested dict with the sections ``data``, ``model``, ``diffusion``, ``train`` and
``sample``, plus ``seed``. A file may start from a preset (``preset: digits``) and override any
key; every key is checked, and an unknown one is named in the error. The resolved config is
saved as ``config.json`` in the run directory, so a run is reproducible from it alone.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .checks import check_integer, check_number, fill_sections  # noqa: F401 (re-exported)
from .errors import DifflabError
from .random import check_seed
from .sections import DataSection, DiffusionSection, SampleSection, TrainSection, defaults

#: each section's defaults, from its dataclass in :mod:`difflab.sections`
SECTIONS: dict[str, dict] = {"data": defaults(DataSection), "diffusion": defaults(DiffusionSection),
                             "train": defaults(TrainSection), "sample": defaults(SampleSection)}


def _toy(name: str) -> dict:
    return {
        "data": {"name": name},
        "model": {"type": "mlp", "dim": 2, "hidden": 128, "depth": 3, "time_dim": 64},
        "diffusion": {"schedule": "linear", "T": 1000, "parameterization": "eps"},
        "train": {"steps": 10000, "batch_size": 512, "lr": 1e-3, "warmup": 200, "ema_decay": 0.995,
                  "log_every": 100, "sample_every": 2000, "save_every": 2000, "num_samples": 2000},
        "sample": {"sampler": "ddim", "steps": 50, "clip": False},
    }


def _mnist_like(name: str) -> dict:
    return {
        "data": {"name": name},
        "model": {"type": "unet", "in_channels": 1, "image_size": 28, "base_channels": 32,
                  "channel_mult": [1, 2, 2], "num_res_blocks": 1, "attention_resolutions": [7],
                  "dropout": 0.1, "num_classes": 10},
        "diffusion": {"schedule": "cosine", "T": 1000, "parameterization": "eps"},
        "train": {"steps": 20000, "batch_size": 128, "lr": 5e-4, "warmup": 500, "ema_decay": 0.999,
                  "log_every": 100, "sample_every": 2000, "save_every": 2000, "num_samples": 100},
        "sample": {"sampler": "ddim", "steps": 50, "clip": True},
    }


def _with_schedule(base: dict, schedule: str, **params) -> dict:
    """A preset on a continuous-time or NCSN schedule (Song et al. 2021; Song & Ermon 2019)."""
    out = copy.deepcopy(base)
    out["diffusion"] = {**out["diffusion"], "schedule": schedule, "schedule_params": params}
    return out


def _edm(base: dict, sigma_data: float) -> dict:
    """A preset trained as EDM (Karras et al. 2022, Table 1): σ in [0.002, 80] on a VE schedule, the preconditioned
    denoiser with ``sigma_data``, σ drawn log-normal (P_mean = −1.2, P_std = 1.2), sampled with Heun."""
    out = _with_schedule(base, "ve", sigma_min=0.002, sigma_max=80.0)
    out["diffusion"] = {**out["diffusion"], "formulation": "edm", "parameterization": "edm", "sigma_data": sigma_data}
    out["train"] = {**out["train"], "timestep_sampler": "lognormal"}
    out["sample"] = {**out["sample"], "sampler": "heun", "steps": 18}
    return out


def _consistency(base: dict, sigma_data: float) -> dict:
    """A preset trained by consistency training (Song et al. 2023; Song & Dhariwal 2023, iCT): the consistency
    parameterization on EDM's VE schedule (σ in [0.002, 80]), neighbouring levels of iCT's growing grid, the
    pseudo-Huber loss, sampled in 2 consistency steps (1 is one-step generation)."""
    from .formulations import rebase

    out = rebase(base, {"diffusion": {"formulation": "consistency"}})
    out["diffusion"] = {**out["diffusion"], "sigma_data": sigma_data}
    return out


def _flow(base: dict) -> dict:
    """A preset trained by flow matching: the straight path x_t = (1 − t) x_0 + t ε, a velocity network, t uniform,
    sampled by the Euler steps of the flow ODE (DDIM on this path) in 50 steps."""
    out = _with_schedule(base, "flow")
    out["diffusion"] = {**out["diffusion"], "formulation": "flow", "parameterization": "velocity"}
    out["sample"] = {**out["sample"], "sampler": "ddim", "steps": 50}
    return out


def _vdm(base: dict) -> dict:
    """A preset trained as a variational diffusion model (Kingma et al. 2021): the formulation's defaults
    (:data:`difflab.formulations.FORMULATIONS`) on the preset's data and network."""
    from .formulations import rebase

    return rebase(base, {"diffusion": {"formulation": "vdm"}})


PRESETS: dict[str, dict] = {
    **{name: _toy(name) for name in ("8gaussians", "swissroll", "moons", "checkerboard")},
    "digits": {
        "data": {"name": "digits"},
        "model": {"type": "unet", "in_channels": 1, "image_size": 8, "base_channels": 32,
                  "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
                  "dropout": 0.0},
        "diffusion": {"schedule": "cosine", "T": 1000, "parameterization": "eps"},
        "train": {"steps": 4000, "batch_size": 64, "lr": 1e-3, "warmup": 200, "ema_decay": 0.998,
                  "log_every": 100, "sample_every": 1000, "save_every": 1000, "num_samples": 64},
        "sample": {"sampler": "ddim", "steps": 50, "clip": True},
    },
    "mnist": _mnist_like("mnist"),
    # score-based presets: toys are standardised, so their largest pairwise distance is about 3
    # (the σ_max rule of Song & Ermon 2020, "Improved techniques", Technique 1)
    "8gaussians-vp": _with_schedule(_toy("8gaussians"), "vp"),
    "8gaussians-ve": _with_schedule(_toy("8gaussians"), "ve", sigma_min=0.01, sigma_max=4.0),
    "8gaussians-ncsn": {**_with_schedule(_toy("8gaussians"), "ncsn", sigma_min=0.01, sigma_max=4.0, levels=20),
                        "sample": {"sampler": "langevin", "steps": 20, "clip": False}},
    "swissroll-vp": _with_schedule(_toy("swissroll"), "vp"),
    # EDM (Karras et al. 2022): preconditioned denoiser on a VE schedule from σ_min to σ_max, log-normal σ in
    # training, Heun sampling; standardised toys have σ_data = 1
    "8gaussians-edm": _edm(_toy("8gaussians"), sigma_data=1.0),
    # flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023): the straight path, a velocity network
    "8gaussians-flow": _flow(_toy("8gaussians")),
    "fashion-mnist": _mnist_like("fashion-mnist"),
}


PRESETS["digits-vp"] = _with_schedule(PRESETS["digits"], "vp")
PRESETS["digits-edm"] = _edm(PRESETS["digits"], sigma_data=0.5)  # images in [−1, 1]
PRESETS["mnist-edm"] = _edm(_mnist_like("mnist"), sigma_data=0.5)
PRESETS["digits-flow"] = _flow(PRESETS["digits"])
PRESETS["mnist-flow"] = _flow(_mnist_like("mnist"))
PRESETS["8gaussians-ct"] = _consistency(_toy("8gaussians"), sigma_data=1.0)
PRESETS["digits-ct"] = _consistency(PRESETS["digits"], sigma_data=0.5)
PRESETS["mnist-ct"] = _consistency(_mnist_like("mnist"), sigma_data=0.5)
PRESETS["digits-vdm"] = _vdm(PRESETS["digits"])
PRESETS["mnist-vdm"] = _vdm(_mnist_like("mnist"))


def _merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "schedule_params":
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


# SR3 (Saharia et al. 2021): 14x14 -> 28x28, the U-Net sees the bicubically upsampled 2x2-average-pooled image
# the base of a two-stage cascade (``difflab cascade``, then ``mnist-sr``): class-conditional MNIST resized to 14x14
# (2x2 average pools: exactly the low-resolution images mnist-sr is conditioned on)
PRESETS["mnist-14"] = _merge(_mnist_like("mnist"), {
    "data": {"image_size": 14},
    "model": {"image_size": 14, "channel_mult": [1, 2], "attention_resolutions": [7]},
})

PRESETS["mnist-sr"] = _merge(_mnist_like("mnist"), {
    "data": {"low_res_factor": 2},
    "model": {"num_classes": None, "cond_channels": 1, "channel_mult": [1, 2], "attention_resolutions": [],
              "dropout": 0.0},
    "train": {"batch_size": 64, "lr": 1e-3, "warmup": 200, "ema_decay": 0.995, "sample_every": 0, "save_every": 500,
              "num_samples": 64},
})


def validate(config: dict) -> dict:
    """Fill defaults and check every key; return the complete config. A config that names a formulation is laid over
    that formulation's defaults (:mod:`difflab.formulations`); one that names none gets the one its keys imply."""
    from . import formulations

    if isinstance(config, dict) and isinstance(config.get("diffusion"), dict):
        config = _merge(formulations.underneath(config), config)
    out = fill_sections(config, SECTIONS, {"model", "seed", "preset", "normalization", "latent"})
    if out["diffusion"]["formulation"] is None:
        out["diffusion"]["formulation"] = formulations.implied(out["diffusion"])
    if "model" not in config or not isinstance(config["model"], dict):
        raise DifflabError("the config needs a 'model' section with a 'type' (mlp or unet).")
    from .models import build_model, complete_config

    out["model"] = complete_config(config["model"])
    _check_objective(out)
    build_model(out["model"])  # raises on a bad value
    _check_low_res(out)
    out["seed"] = config.get("seed", 0)
    if config.get("normalization") is not None:
        out["normalization"] = config["normalization"]
    if config.get("latent") is not None:  # latent diffusion on an autoencoder run's latents (difflab.latent)
        from .latent import check_section
        out["latent"] = check_section(config["latent"])
    if out["data"]["name"] is None:
        raise DifflabError("the config needs 'data.name' (a dataset such as 8gaussians, digits or mnist).")
    _check_numbers(out)
    return out


TIMESTEP_SAMPLERS = ("uniform", "loss-second-moment", "lognormal", "logit-normal", "antithetic", "consistency")


def _check_objective(cfg: dict) -> None:
    """Check the training objective's keys (Nichol & Dhariwal 2021, "Improved DDPM") and give a
    learned-variance U-Net its 2C output channels: ε̂, then the variance interpolation v."""
    diff, tr, model = cfg["diffusion"], cfg["train"], cfg["model"]
    from .objectives import LEARNED_VARIANCE, LOSSES

    if diff["loss"] not in LOSSES:
        raise DifflabError(f"diffusion.loss must be one of {', '.join(LOSSES)}, got {diff['loss']!r}.")
    if not isinstance(diff["learned_variance"], bool):
        raise DifflabError(f"diffusion.learned_variance must be true or false, got {diff['learned_variance']!r}.")
    lam = diff["vlb_weight"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 < lam < float("inf"):
        raise DifflabError(f"diffusion.vlb_weight (the λ of L_hybrid = L_simple + λ L_vlb) must be a finite number > 0, got {lam!r}.")
    from .objectives import WEIGHTINGS

    if diff["weighting"] not in WEIGHTINGS:
        raise DifflabError(f"diffusion.weighting must be one of {', '.join(WEIGHTINGS)}, got {diff['weighting']!r}.")
    check_number(diff["min_snr_gamma"], "diffusion.min_snr_gamma", positive=True)
    if diff["weighting"] != "none" and diff["loss"] != "simple":
        raise DifflabError(f"diffusion.weighting = {diff['weighting']!r} weights L_simple; diffusion.loss = "
                           f"{diff['loss']!r} has its own weighting (the bound's), so leave diffusion.weighting at none.")
    if tr["timestep_sampler"] not in TIMESTEP_SAMPLERS:
        raise DifflabError(f"train.timestep_sampler must be one of {', '.join(TIMESTEP_SAMPLERS)}, got {tr['timestep_sampler']!r}.")
    learned = diff["learned_variance"]
    if diff["loss"] in LEARNED_VARIANCE and not learned:
        raise DifflabError(f"diffusion.loss = {diff['loss']!r} trains a learned variance; set diffusion.learned_variance: true.")
    if learned and diff["loss"] not in LEARNED_VARIANCE:
        raise DifflabError(f"diffusion.learned_variance needs diffusion.loss {' or '.join(sorted(LEARNED_VARIANCE))}: "
                           f"{diff['loss']!r} gives the variance "
                           "no gradient, so it would stay untrained.")
    if diff["loss"] == "vdm" and model["type"] not in ("unet", "text-unet"):
        raise DifflabError(f"diffusion.loss = 'vdm' bounds the likelihood of 8-bit images and needs an image model (unet), "
                           f"got model type {model['type']!r}.")
    if learned and model["type"] != "unet":
        raise DifflabError(f"diffusion.learned_variance needs an image model (unet), got model type {model['type']!r}: "
                           "the variational bound's decoder is defined on 8-bit images.")
    if learned and diff["parameterization"] != "eps":
        raise DifflabError(f"diffusion.learned_variance needs diffusion.parameterization 'eps' (IDDPM predicts ε and v), "
                           f"got {diff['parameterization']!r}.")
    if model["type"] == "unet":
        c, out = model["in_channels"], model["out_channels"]
        want = 2 * c if learned else c
        if out is None:
            if learned and isinstance(c, int) and not isinstance(c, bool):
                model["out_channels"] = want
        elif out != want:
            why = (f"2 x model.in_channels = {want} (ε̂, then the variance v) for diffusion.learned_variance: true"
                   if learned else f"model.in_channels = {c} unless diffusion.learned_variance is true")
            raise DifflabError(f"model.out_channels = {out!r} contradicts the config: it must be {why} (or be left out).")


def _check_low_res(cfg: dict) -> None:
    """``data.low_res_factor`` f: an SR3 model (:mod:`difflab.tasks.superres`) conditioned on the f×f-pooled image,
    upsampled back; its U-Net must take that image beside x_t (model.cond_channels = model.in_channels)."""
    f, model = cfg["data"]["low_res_factor"], cfg["model"]
    cond = model.get("cond_channels", 0)
    if f is None:
        if cond:
            raise DifflabError(f"model.cond_channels = {cond} needs a conditioning image; set data.low_res_factor "
                               "(super-resolution) or leave cond_channels at 0.")
        return
    if isinstance(f, bool) or not isinstance(f, int) or f < 2:
        raise DifflabError(f"data.low_res_factor must be an integer >= 2 (or null), got {f!r}.")
    if model["type"] != "unet" or cond != model["in_channels"]:
        raise DifflabError(f"data.low_res_factor needs a unet with model.cond_channels = model.in_channels "
                           f"({model.get('in_channels')}), got cond_channels {cond!r}.")
    if model["image_size"] % f:
        raise DifflabError(f"data.low_res_factor = {f} must divide model.image_size = {model['image_size']}.")


def _check_numbers(cfg: dict) -> None:
    tr = cfg["train"]
    for key in ("steps", "batch_size", "log_every", "keep", "num_samples"):
        check_integer(tr[key], f"train.{key}")
    for key in ("warmup", "sample_every", "save_every"):
        check_integer(tr[key], f"train.{key}", 0)
    check_number(tr["lr"], "train.lr", positive=True)
    check_number(tr["label_dropout"], "train.label_dropout", high=1)
    check_number(tr["ema_decay"], "train.ema_decay", high=1)
    check_number(tr["grad_clip"], "train.grad_clip", why="0 turns clipping off")
    check_number(tr["weight_decay"], "train.weight_decay")
    check_seed(cfg["seed"], "seed", headroom=1)
    from . import schedules
    from .samplers import get as get_sampler
    from .samplers.discretizations import check_steps

    diff = cfg["diffusion"]
    from .denoiser import PARAMETERIZATIONS

    if diff["parameterization"] not in PARAMETERIZATIONS:
        raise DifflabError(f"diffusion.parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                           f"got {diff['parameterization']!r}.")
    if not isinstance(diff["ot_pairing"], bool):
        raise DifflabError(f"diffusion.ot_pairing must be true or false, got {diff['ot_pairing']!r}.")
    from . import formulations

    formulations.check(diff, tr)
    schedule = schedules.get(diff["schedule"], diff["T"], **diff["schedule_params"])
    check_number(diff["sigma_data"], "diffusion.sigma_data", positive=True)
    if tr["timestep_sampler"] in ("lognormal", "logit-normal", "antithetic") and schedule.discrete:
        raise DifflabError(f"train.timestep_sampler = {tr['timestep_sampler']!r} needs a continuous schedule "
                           f"(vp, subvp, ve, flow), got {diff['schedule']!r}.")
    if not schedule.discrete:
        from .objectives import LEARNED_VARIANCE

        if diff["loss"] in LEARNED_VARIANCE:
            raise DifflabError(f"diffusion.loss = {diff['loss']!r} needs a discrete schedule (t = 1..T), got {diff['schedule']!r}.")
        if tr["timestep_sampler"] not in ("uniform", "lognormal", "logit-normal", "antithetic", "consistency"):
            raise DifflabError(f"train.timestep_sampler = {tr['timestep_sampler']!r} needs a discrete schedule (t = 1..T), "
                               f"got {diff['schedule']!r}.")
    get_sampler(cfg["sample"]["sampler"])
    check_steps(cfg["sample"]["steps"], schedule.T if schedule.discrete else None)
    _check_sample_start(cfg["sample"], schedule)


def _check_sample_start(sample: dict, schedule) -> None:
    """sample.discretization names a discretization; sample.gaussian_start is None or a noise level σ̃ > 0."""
    import math

    from .samplers.discretizations import NAMES

    name = sample.get("discretization")
    if name is not None and (not isinstance(name, str) or name.partition(":")[0] not in NAMES):
        raise DifflabError(f"sample.discretization = {name!r} is not one of {', '.join(NAMES)}.")
    start = sample.get("gaussian_start")
    if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start)
                              or start <= 0):
        raise DifflabError(f"sample.gaussian_start = {start!r} must be a noise level σ̃ = σ/α > 0, or null (off).")


def with_defaults(config: dict) -> dict:
    """A saved config with the keys it lacks filled in from the section defaults and the model type's defaults, so
    a run saved before a key existed reads as having the key's default (the shipped models, older runs)."""
    from .models import complete_config

    from .formulations import implied

    out = dict(config)
    for section, values in SECTIONS.items():
        if isinstance(config.get(section), dict):
            out[section] = {**copy.deepcopy(values), **config[section]}
    if isinstance(config.get("diffusion"), dict) and out["diffusion"]["formulation"] is None:
        out["diffusion"]["formulation"] = implied(out["diffusion"])
    if isinstance(config.get("model"), dict):
        out["model"] = complete_config(config["model"])
    return out


def load_file(path: str | Path) -> dict:
    """Read a YAML (.yaml/.yml) or TOML (.toml) or JSON config file."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"config file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DifflabError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start} cannot be decoded).") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise DifflabError(f"config file {str(path)!r} must end in .yaml, .yml, .toml or .json.")
    except DifflabError:
        raise
    except Exception as e:  # parser errors of yaml / tomllib / json
        raise DifflabError(f"config file {str(path)!r} could not be parsed: {str(e).splitlines()[0]}.") from None
    if not isinstance(data, dict):
        raise DifflabError(f"config file {str(path)!r} must hold a mapping of sections.")
    return data


def _choices(name, presets: dict) -> str:
    """The presets an unknown name could have meant: all of them when they fit one short line, else the close ones and
    the families, so the error stays one readable sentence."""
    import difflib

    names = list(presets)
    if len(", ".join(names)) <= 160:
        return "one of " + ", ".join(names)
    close = difflib.get_close_matches(str(name), names, n=4, cutoff=0.6)
    families = sorted({n.split("-")[0] for n in names})
    return (f"{' or '.join(close)}, or another of the {len(names)} presets" if close else f"one of the {len(names)} presets") \
        + f" (on {', '.join(families)}; `difflab train --help` lists them)"


def resolve_spec(spec: str | dict, presets: dict[str, dict], validate, kind: str = "", hint: str = "",
                 rebase=None) -> dict:
    """A preset name of ``presets``, a YAML/TOML/JSON config file that may start from one (``preset: NAME``) and
    override any key, or a dict -> the config ``validate`` completes and checks. ``kind`` names the kind of
    preset in errors ("classifier", "autoencoder"); ``hint`` is added to the error for an unknown name. A model
    section of another type replaces the preset's model instead of merging into it."""
    what = f"{kind} preset".strip()
    if isinstance(spec, dict):
        data = spec
    elif spec in presets:
        data = {"preset": spec}
    elif Path(spec).suffix in (".yaml", ".yml", ".toml", ".json"):
        data = load_file(spec)
    else:
        raise DifflabError(f"unknown {what} {spec!r}{hint}; expected {_choices(spec, presets)}, "
                           "or a .yaml/.toml config file.")
    preset = data.get("preset")
    if preset is not None:
        if preset not in presets:
            raise DifflabError(f"unknown {what} {preset!r}; expected {_choices(preset, presets)}.")
        base = presets[preset]
        override = {k: v for k, v in data.items() if k != "preset"}
        base_type = (base.get("model") or {}).get("type")
        if isinstance(override.get("model"), dict) and override["model"].get("type", base_type) != base_type:
            base = {k: v for k, v in base.items() if k != "model"}
        if rebase is not None:
            base = rebase(base, override)
        data = _merge(base, override)
    return validate(data)


def resolve(spec: str | dict) -> dict:
    """A preset name, a config file path, or a dict -> a complete, validated config."""
    from .formulations import rebase

    return resolve_spec(spec, PRESETS, validate, rebase=rebase)
