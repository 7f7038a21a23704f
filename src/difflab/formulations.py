"""Training formulations: the one config key (``diffusion.formulation``) that chooses how a diffusion model is
trained, with the defaults each brings and the options it can use.

- ``ddpm``: a discrete or SDE schedule, a network predicting ε, x_0, v or the score, t uniform (Ho et al. 2020;
  Song et al. 2021; Salimans & Ho 2022 for v).
- ``edm``: EDM's preconditioned denoiser, σ log-normal, Heun sampling (Karras et al. 2022, Table 1).
- ``vdm``: variational diffusion models: the continuous-time bound with a learned monotone log-SNR γ(t), antithetic
  times, an ε network, on 8-bit images (Kingma et al. 2021).
- ``consistency``: consistency training (Song et al. 2023; Song & Dhariwal 2023): a network whose one evaluation
  maps noise to data, trained on neighbouring noise levels of a growing grid, one- or few-step sampling.
- ``flow``: flow matching / rectified flow on the straight path x_t = (1 − t) x_0 + t ε with a velocity network
  (Lipman et al. 2023; Liu et al. 2023), t uniform or logit-normal (Esser et al. 2024), optionally with noise
  paired to data by minibatch optimal transport (Tong et al. 2024).

Every formulation but vdm and consistency trains through the same objective (:func:`difflab.objectives.simple`), with
any weighting of :data:`difflab.objectives.WEIGHTINGS` (vdm and consistency have their own losses in
:data:`difflab.objectives.LOSSES`); a formulation is a set of defaults and the checks of what fits together,
nothing more. A config that names no formulation gets the one its parameterization and schedule imply.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .errors import DifflabError


@dataclass(frozen=True)
class Formulation:
    """``defaults``: config sections (diffusion, train, sample) the formulation sets unless the config sets them;
    ``parameterizations``/``schedules``: what it can use (None: any)."""

    name: str
    paper: str
    parameterizations: tuple[str, ...]
    schedules: tuple[str, ...] | None
    defaults: dict = field(default_factory=dict)


CONTINUOUS = ("vp", "subvp", "ve", "flow")

FORMULATIONS: dict[str, Formulation] = {f.name: f for f in (
    Formulation("ddpm", "Ho et al. 2020; Song et al. 2021 (SDEs); Salimans & Ho 2022 (v)",
                ("eps", "x0", "v", "score"), None,
                {"diffusion": {"schedule": "linear", "parameterization": "eps", "schedule_params": {}},
                 "train": {"timestep_sampler": "uniform"}, "sample": {"sampler": "ddim", "steps": 50}}),
    Formulation("edm", "Karras et al. 2022, Elucidating the Design Space, Table 1",
                ("edm",), CONTINUOUS,
                {"diffusion": {"schedule": "ve", "schedule_params": {"sigma_min": 0.002, "sigma_max": 80.0},
                               "parameterization": "edm"},
                 "train": {"timestep_sampler": "lognormal"}, "sample": {"sampler": "heun", "steps": 18}}),
    Formulation("vdm", "Kingma et al. 2021, Variational Diffusion Models",
                ("eps",), ("learned",),
                {"diffusion": {"schedule": "learned", "schedule_params": {}, "parameterization": "eps", "loss": "vdm"},
                 "train": {"timestep_sampler": "antithetic"}, "sample": {"sampler": "ddpm", "steps": 100}}),
    Formulation("consistency", "Song et al. 2023, Consistency Models; Song & Dhariwal 2023, Improved Techniques (iCT)",
                ("consistency",), None,
                {"diffusion": {"schedule": "ve", "schedule_params": {"sigma_min": 0.002, "sigma_max": 80.0},
                               "parameterization": "consistency", "loss": "consistency"},
                 "train": {"timestep_sampler": "consistency"}, "sample": {"sampler": "consistency", "steps": 2}}),
    Formulation("flow", "Lipman et al. 2023; Liu et al. 2023; Esser et al. 2024 (logit-normal t); Tong et al. 2024 (OT)",
                ("velocity", "eps", "x0"), ("flow",),
                {"diffusion": {"schedule": "flow", "schedule_params": {}, "parameterization": "velocity"},
                 "train": {"timestep_sampler": "uniform"}, "sample": {"sampler": "ddim", "steps": 50}}),
)}


def implied(diffusion: dict) -> str:
    """The formulation a diffusion section without ``formulation`` describes: edm for EDM's preconditioning,
    consistency for a consistency model, flow on the straight path, ddpm otherwise (configs written before the key
    existed)."""
    if diffusion.get("parameterization") == "edm":
        return "edm"
    if diffusion.get("parameterization") == "consistency" or diffusion.get("loss") == "consistency":
        return "consistency"
    if diffusion.get("schedule") == "learned" or diffusion.get("loss") == "vdm":
        return "vdm"
    if diffusion.get("schedule") == "flow" or diffusion.get("parameterization") == "velocity":
        return "flow"
    return "ddpm"


def get(name) -> Formulation:
    if name not in FORMULATIONS:
        raise DifflabError(f"⟨diffusion.formulation⟩ must be one of {', '.join(FORMULATIONS)}, got {name!r}.")
    return FORMULATIONS[name]


def rebase(base: dict, override: dict) -> dict:
    """The preset ``base`` under an ``override`` that names another formulation: the formulation's defaults replace
    the preset's diffusion, timestep and sampler keys (the override's own keys still win, laid on top after). So ``preset: mnist`` with ``diffusion: {formulation: flow}`` is MNIST's U-Net trained by flow matching."""
    name = (override.get("diffusion") or {}).get("formulation") if isinstance(override.get("diffusion"), dict) else None
    base_diffusion = base.get("diffusion") or {}
    if name is None or name == base_diffusion.get("formulation", implied(base_diffusion)):
        return base
    out = copy.deepcopy(base)
    for section, values in _defaults(name, override).items():
        replaced = {**(out.get(section) or {}), **copy.deepcopy(values)}
        if section == "diffusion":
            replaced["formulation"] = name
        out[section] = replaced
    return out


def underneath(config: dict) -> dict:
    """The formulation's defaults that a config naming it (without a preset) is laid over, or {}."""
    diffusion = config.get("diffusion")
    name = diffusion.get("formulation") if isinstance(diffusion, dict) else None
    return {} if name is None else _defaults(name, config)


def _defaults(name: str, override: dict) -> dict:
    """The formulation's defaults, without its schedule parameters when ``override`` names another schedule (they
    belong to the formulation's own schedule)."""
    out = copy.deepcopy(get(name).defaults)
    given = override.get("diffusion") or {}
    if "schedule" in given and given["schedule"] != out["diffusion"]["schedule"]:
        out["diffusion"]["schedule_params"] = {}
    return out


def check(diffusion: dict, train: dict) -> None:
    """Refuse a parameterization, schedule or option the formulation cannot use, in one sentence naming the key."""
    form = get(diffusion["formulation"])
    p = diffusion["parameterization"]
    if p not in form.parameterizations:
        other = implied({"parameterization": p})
        hint = f"; for {p!r} set diffusion.formulation: {other}" if other != form.name else ""
        raise DifflabError(f"diffusion.formulation = {form.name!r} trains a network predicting "
                           f"{' or '.join(form.parameterizations)}, not ⟨diffusion.parameterization⟩ {p!r}{hint}.")
    if form.schedules is not None and diffusion["schedule"] not in form.schedules:
        raise DifflabError(f"diffusion.formulation = {form.name!r} needs ⟨diffusion.schedule⟩ "
                           f"{' or '.join(form.schedules)}, got {diffusion['schedule']!r}.")
    if (form.name == "vdm") != (diffusion.get("loss") == "vdm") or (form.name == "vdm") != (diffusion["schedule"] == "learned"):
        raise DifflabError("the learned schedule, ⟨diffusion.loss⟩ 'vdm' (the continuous-time bound that trains it) and "
                           "diffusion.formulation: vdm go together (Kingma et al. 2021); set all three or none.")
    if (form.name == "consistency") != (diffusion.get("loss") == "consistency") \
            or (form.name == "consistency") != (train.get("timestep_sampler") == "consistency"):
        raise DifflabError("consistency training pairs neighbouring noise levels: ⟨diffusion.loss⟩ 'consistency', "
                           "train.timestep_sampler 'consistency' and diffusion.formulation: consistency go together "
                           "(Song & Dhariwal 2023); set all three or none.")
    if form.name == "ddpm" and diffusion["schedule"] == "flow":
        raise DifflabError("⟨diffusion.schedule⟩ 'flow' is the straight path of flow matching; set "
                           "diffusion.formulation: flow.")
    if (diffusion.get("schedule_params") or {}).get("zero_terminal_snr") and p not in ("v", "x0"):
        raise DifflabError(f"⟨diffusion.schedule_params.zero_terminal_snr⟩ makes x_T pure noise, where an ε network "
                           f"says nothing about x_0; set diffusion.parameterization to v (or x0), got {p!r} "
                           "(Lin et al. 2024, Sec. 3.2).")
    if diffusion.get("ot_pairing") and form.name != "flow":
        raise DifflabError(f"⟨diffusion.ot_pairing⟩ pairs noise with data for flow matching (Tong et al. 2024); "
                           f"it needs diffusion.formulation: flow, got {form.name!r}.")


def describe() -> str:
    """One line per formulation with its paper and what it trains, for ``difflab train --help``."""
    lines = []
    for f in FORMULATIONS.values():
        d = f.defaults
        lines.append(f"  {f.name:<11} {d['diffusion']['parameterization']} network on a {d['diffusion']['schedule']} "
                     f"schedule, t {d['train']['timestep_sampler']}, {d['sample']['sampler']} sampling\n"
                     f"              ({f.paper})")
    return "\n".join(lines)
