"""Progressive distillation in the one loop (Salimans & Ho 2022, Algorithm 2): each round trains a student of N
steps on a teacher of 2N, starting from the teacher's weights, and becomes the next round's teacher.

``distill(run, out, to=4)`` halves from the teacher's step count (``from_steps``, a power-of-two multiple of ``to``)
down to ``to``; round N is an ordinary run ``out/round-<N>`` (config.json with a ``distill`` section naming its
teacher), resumable bit for bit like any run, and ``difflab sample out/round-<N> --steps N`` samples it with DDIM.
The student's parameterization is ``v`` by default (ε-prediction cannot make the large steps: x̂_0 = (z − σε̂)/α
explodes where α → 0; Salimans & Ho 2022, Sec. 4). Discrete schedules (t = 1..T); data-space models, unconditional
or class-conditional: a conditional teacher is distilled class by class, each example's label (dropped to the null
label at the teacher's ``train.label_dropout`` rate) given to the teacher's two steps and to the student's one, so the
student keeps both the conditional and the unconditional model that classifier-free guidance combines.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .. import checkpoint
from ..denoiser import build_denoiser, build_network
from ..distillation import teacher_times, truncated_snr_weight, two_step_target
from ..errors import DifflabError
from ..pretrained import model_dir, read_model_config, read_model_record
from ..random import randn
from .diffusion import RESUMABLE_KEYS, StudentTrainable, _check_diffusion_run, load_teacher_weights
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config

PARAMETERIZATIONS = ("v", "x0", "eps")


class ProgressiveTrainable(StudentTrainable):
    """Student of ``distill.student_steps`` steps: per example a student step k, z_t = α_t x_0 + σ_t ε at its start,
    and the loss max(SNR_t, 1) ‖x̂_θ(z_t) − x̃‖² against the teacher's two-step target x̃ (mean over dimensions).
    ``teacher`` (a denoiser) replaces the teacher run named in the config (tests use the exact oracle)."""

    def __init__(self, config: dict, record: dict | None = None, teacher=None):
        super().__init__(config, record, teacher)
        self.name = f"distill {config['data']['name']} → {config['distill']['student_steps']} steps"
        self.loss_title = f"{config['data']['name']}: progressive distillation to {config['distill']['student_steps']} steps"

    def setup(self, device: torch.device) -> int:
        n = super().setup(device)
        d = self.config["distill"]
        self.times = teacher_times(self.schedule.T, d["student_steps"])
        return n

    def build(self) -> torch.nn.Module:
        net = build_network(self.config)
        teacher = self.config["distill"].get("teacher")
        if teacher is not None:  # the student starts from the teacher's weights (Algorithm 2, "θ ← η")
            load_teacher_weights(net, teacher)
        return net

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        x0 = self.data[idx]
        k = torch.randint(0, self.config["distill"]["student_steps"], (idx.shape[0],), generator=generator)
        eps = randn(x0.shape, generator, self.device, x0.dtype)
        return {"x0": x0, "t": self.times[2 * k], "t_mid": self.times[2 * k + 1], "t_next": self.times[2 * k + 2],
                "eps": eps, "y": self.conditions(idx, generator)}

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        student, teacher = build_denoiser(net, self.run_config), self.teacher
        x0, eps = batch["x0"][part], batch["eps"][part]
        t, t_mid, t_next = batch["t"][part], batch["t_mid"][part], batch["t_next"][part]
        if batch["y"] is not None:  # a class-conditional pair: both read each example's label (or the null one)
            student, teacher = student.with_labels(batch["y"][part]), teacher.with_labels(batch["y"][part])
        shape = (-1, *[1] * (x0.ndim - 1))
        a = self.schedule.alpha(t).to(x0.device, x0.dtype).reshape(shape)
        s = self.schedule.sigma(t).to(x0.device, x0.dtype).reshape(shape)
        z_t = a * x0 + s * eps
        with torch.no_grad():
            target = two_step_target(self.schedule, teacher, z_t, t, t_mid, t_next)
        err = (student(z_t, t).x0 - target).pow(2).flatten(1).mean(1)
        return truncated_snr_weight(self.schedule, t).to(err) * err, {}


def check_teacher(run_dir: str | Path) -> dict:
    """The config of a run progressive distillation takes: a data-space model on a discrete schedule, unconditional
    or class-conditional; anything else is refused in one sentence."""
    config = read_model_config(run_dir)
    _check_diffusion_run(config, Path(run_dir))
    if not isinstance(config.get("diffusion"), dict) or not isinstance(config.get("model"), dict):
        raise DifflabError(f"{str(run_dir)!r} is not a diffusion run; progressive distillation needs one as its teacher.")
    from .. import schedules

    diff = config["diffusion"]
    if not schedules.get(diff["schedule"], diff["T"], **diff["schedule_params"]).discrete:
        raise DifflabError(f"progressive distillation here halves DDIM's trailing steps on a discrete schedule (t = 1..T); "
                           f"{str(run_dir)!r} uses the continuous schedule {diff['schedule']!r}.")
    if "latent" in config or config["data"].get("low_res_factor") or config["model"]["type"] == "text-unet" \
            or config["diffusion"]["learned_variance"]:
        raise DifflabError(f"progressive distillation takes data-space models with a fixed variance, unconditional or "
                           f"class-conditional; {str(run_dir)!r} is latent, super-resolution, text-conditioned or "
                           "learned-variance.")
    return config


def check_steps(from_steps, to) -> list[int]:
    """The student step counts of the rounds, from_steps/2 down to ``to``; refuses a ``to`` that is not a power-of-two
    fraction of ``from_steps``."""
    for name, v in (("⟨to⟩", to), ("⟨from_steps⟩", from_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DifflabError(f"{name} must be a positive integer, got {v!r}.")
    ratio = from_steps // to if to else 0
    if to >= from_steps or from_steps % to or ratio & (ratio - 1):
        raise DifflabError(f"⟨to⟩ = {to} must be the teacher's {from_steps} steps halved one or more times "
                           f"(a power-of-two fraction: {', '.join(str(from_steps >> k) for k in range(1, 6) if from_steps >> k)}"
                           f"{'' if from_steps % 2 == 0 else ' — none, since it is odd'}).")
    rounds, n = [], from_steps // 2
    while n >= to:
        rounds.append(n)
        n //= 2
    return rounds


def round_config(teacher_config: dict, teacher: str, student_steps: int, train: dict, parameterization: str) -> dict:
    config = copy.deepcopy(teacher_config)
    config["diffusion"]["parameterization"] = parameterization
    config["distill"] = {"method": "progressive", "teacher": None if teacher is None else str(teacher),
                         "student_steps": student_steps}
    config["train"] = {**config["train"], **train}
    # the student's grid starts at T: no other discretization, no Gaussian start part-way down
    config["sample"] = {**config["sample"], "sampler": "ddim", "steps": student_steps, "eta": 0.0,
                        "discretization": None, "gaussian_start": None}
    return config


def distill(run_dir: str | Path, out: str | Path, to: int, from_steps: int | None = None, steps: int = 2000,
            parameterization: str = "v", resume: bool = False, progress: bool = True, device: str | None = None,
            max_minutes: float | None = None, log=print) -> Path:
    """Progressive distillation of the run ``run_dir`` from ``from_steps`` (default: the run's sample steps) down to
    ``to`` steps, ``steps`` training steps per round, each round in ``out/round-<N>``; returns the last round's
    directory. With ``resume`` finished rounds are kept and the first unfinished one continues."""
    import time

    out = Path(out)
    config = check_teacher(run_dir)
    if parameterization not in PARAMETERIZATIONS:
        raise DifflabError(f"⟨parameterization⟩ must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}.")
    if from_steps is None:
        from_steps = config["sample"]["steps"]
    rounds = check_steps(from_steps, to)
    check_run_length(steps, max_minutes)
    if out.exists() and not resume and any(out.iterdir()):
        raise DifflabError(f"⟨out⟩ {str(out)!r} already holds files; set ⟨resume⟩ to continue it or choose another.")
    started, teacher = time.monotonic(), model_dir(run_dir)
    for n in rounds:
        where = out / f"round-{n}"
        cfg = round_config(config, str(teacher), n, {"steps": steps, "sample_every": 0}, parameterization)
        cfg = {k: v for k, v in cfg.items() if k not in ("normalization",)}
        if not finished(where):
            left = None if max_minutes is None else max_minutes - (time.monotonic() - started) / 60
            if left is not None and left <= 0:
                log(f"stopped at the time limit before round {n}; continue with resume")
                return where
            is_resume = where.exists() and (where / "config.json").exists()
            run_cfg = prepare_run_config(where, None if is_resume else cfg, is_resume, None, command="distill",
                                         resumable=RESUMABLE_KEYS)
            record = read_model_record(teacher)
            fit(ProgressiveTrainable(run_cfg, record), where, LoopOptions.from_section(run_cfg["train"]), run_cfg["seed"],
                resume=is_resume, device=device, progress=progress, max_minutes=left, log=log)
            if _latest_step(where) < steps:
                return where
        teacher = where
    return out / f"round-{rounds[-1]}"


def finished(where: str | Path) -> bool:
    """Whether the round in ``where`` has trained all its steps."""
    where = Path(where)
    return bool(where.exists() and checkpoint.list_checkpoints(where)) and \
        checkpoint.read_config(where)["train"]["steps"] <= _latest_step(where)


def _latest_step(where: Path) -> int:
    import json

    try:
        return json.loads((checkpoint.latest_valid(where) / "state.json").read_text())["step"]
    except DifflabError:
        return 0
