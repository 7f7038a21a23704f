"""Consistency distillation in the one loop (Song et al. 2023, "Consistency Models", Algorithm 2, with the loss of
Song & Dhariwal 2023): a consistency model learns to map every point of a teacher's probability-flow ODE trajectory
to its end. Per example a pair of neighbouring levels t_i < t_{i+1} of a grid of N Karras levels (uniform over the
N − 1 pairs), x_{t_{i+1}} = α x_0 + σ ε, one Heun step of the teacher down to t_i, and the consistency loss of the
two points (:func:`difflab.objectives.consistency_loss`).

``consistency_distill(run, out)`` writes an ordinary run (config.json with a ``distill`` section naming its teacher),
resumable bit for bit like any run; ``difflab sample OUT --steps 1`` draws in one evaluation. The student has the
teacher's network and schedule with the consistency parameterization; it starts from the teacher's EMA weights when
the teacher is an EDM model (the same c_in and c_noise, the same output wherever σ ≫ σ_min), from scratch otherwise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .. import checkpoint
from ..config import with_defaults
from ..consistency import heun_step, level_times
from ..denoiser import build_denoiser, build_network
from ..errors import DifflabError
from ..pretrained import model_dir, read_model_config, read_model_record
from ..objectives import consistency_loss
from .diffusion import RESUMABLE_KEYS, StudentTrainable, _check_diffusion_run, load_teacher_weights
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config

#: the grid's levels: 18, as Song et al. 2023 distil EDM's CIFAR-10 model (Table 3)
LEVELS = 18


class ConsistencyDistillTrainable(StudentTrainable):
    """A consistency student of the teacher named in ``distill.teacher`` (or of ``teacher``, a denoiser: tests give
    the exact one of Gaussian data)."""

    def __init__(self, config: dict, record: dict | None = None, teacher=None):
        super().__init__(config, record, teacher)
        self.name = f"consistency-distill {config['data']['name']}"
        self.loss_title = f"{config['data']['name']}: consistency distillation ({config['distill']['levels']} levels)"

    def setup(self, device: torch.device) -> int:
        n = super().setup(device)
        d = self.config["distill"]
        self.times = level_times(self.schedule, d["levels"])
        return n

    def build(self) -> torch.nn.Module:
        net = build_network(self.config)
        d = self.config["distill"]
        if d.get("teacher") is not None and d.get("init_from_teacher"):
            load_teacher_weights(net, d["teacher"])
        return net

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        batch = super().draw(idx, generator)
        i = torch.randint(0, len(self.times) - 1, (idx.shape[0],), generator=generator)
        batch["t"], batch["t_next"] = self.times[i].to(self.device), self.times[i + 1].to(self.device)
        return batch

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        student = build_denoiser(net, self.run_config)
        x0, eps, t, t_next = batch["x0"][part], batch["eps"][part], batch["t"][part], batch["t_next"][part]
        y = None if batch["y"] is None else batch["y"][part]
        shape = (-1, *[1] * (x0.ndim - 1))
        a = self.schedule.alpha(t_next.cpu()).to(x0.device, x0.dtype).reshape(shape)
        s = self.schedule.sigma(t_next.cpu()).to(x0.device, x0.dtype).reshape(shape)
        x_hi = a * x0 + s * eps
        teacher = self.teacher if y is None else self.teacher.with_labels(y)
        with torch.no_grad():
            x_lo = heun_step(teacher, x_hi, t_next, t)
        return consistency_loss(student, x_hi, t_next, x_lo, t, y), {}


def check_teacher(run_dir: str | Path) -> dict:
    """The config of a run consistency distillation takes: a data-space diffusion model with a fixed variance (class
    labels allowed); anything else is refused in one sentence."""
    config = read_model_config(run_dir)
    _check_diffusion_run(config, Path(run_dir))
    if not isinstance(config.get("diffusion"), dict) or not isinstance(config.get("model"), dict):
        raise DifflabError(f"{str(run_dir)!r} is not a diffusion run; consistency distillation needs one as its teacher.")
    diff = config["diffusion"]
    if "latent" in config or config["data"].get("low_res_factor") or config["model"]["type"] == "text-unet" \
            or diff["learned_variance"] or diff["schedule"] == "learned":
        raise DifflabError(f"consistency distillation takes data-space models with a fixed variance and schedule; "
                           f"{str(run_dir)!r} is latent, super-resolution, text-conditioned, learned-variance or VDM.")
    if diff["formulation"] == "consistency":
        raise DifflabError(f"{str(run_dir)!r} is a consistency model already; distil the diffusion model it came from.")
    return config


def student_config(teacher_config: dict, teacher: str | None, levels: int, train: dict) -> dict:
    """The teacher's config as a consistency model's: its network and schedule, the consistency parameterization,
    one- or two-step consistency sampling, and the ``distill`` section naming the teacher."""
    config = copy.deepcopy(teacher_config)
    config.pop("normalization", None)
    init = config["diffusion"]["parameterization"] == "edm"
    config["diffusion"] = {**config["diffusion"], "formulation": "consistency", "parameterization": "consistency",
                           "loss": "consistency", "weighting": "none", "ot_pairing": False}
    config["train"] = {**config["train"], "timestep_sampler": "consistency", **train}
    config["sample"] = {**config["sample"], "sampler": "consistency", "steps": 2, "discretization": None}
    config["distill"] = {"method": "consistency", "teacher": None if teacher is None else str(teacher),
                         "levels": levels, "init_from_teacher": init}
    return config


def consistency_distill(run_dir: str | Path | None, out: str | Path, steps: int | None = None, levels: int = LEVELS,
                        resume: bool = False, progress: bool = True, device: str | None = None,
                        max_minutes: float | None = None, log=print) -> Path:
    """Distil the run ``run_dir`` into a consistency model in the run ``out`` (``steps`` training steps, default the
    teacher's train.steps; ``levels`` Karras levels), or continue it with ``resume``. Returns ``out``."""
    out = Path(out)
    from ..checks import check_integer

    check_integer(levels, "levels", 3)
    check_run_length(steps, max_minutes)
    config = None
    if not resume:
        if run_dir is None:
            raise DifflabError("consistency distillation needs the teacher ⟨run⟩ unless it resumes a run.")
        base = check_teacher(run_dir)
        config = student_config(base, model_dir(run_dir).resolve(), levels, {"sample_every": 0})
        if out.exists() and any(out.iterdir()):
            raise DifflabError(f"⟨out⟩ {str(out)!r} already holds files; set ⟨resume⟩ to continue it or choose another.")
    config = prepare_run_config(out, config, resume, None, command="distill", resumable=RESUMABLE_KEYS,
                                read=with_defaults, check_saved=lambda saved: _check_diffusion_run(saved, out))
    if config.get("distill", {}).get("method") != "consistency":
        raise DifflabError(f"{str(out)!r} is not a consistency distillation run.")
    if steps is not None:
        config["train"]["steps"] = steps
    record = checkpoint.read_record(out) if resume else read_model_record(config["distill"]["teacher"])
    return fit(ConsistencyDistillTrainable(config, record), out, LoopOptions.from_section(config["train"]),
               config["seed"], resume=resume, device=device, progress=progress, max_minutes=max_minutes, log=log)
