"""Reflow (Liu et al. 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow",
Sec. 2.2 and Algorithm 1): draw pairs (ε, x̂_0 = ODE(ε)) from a trained flow model, then train a flow model on the
straight path between the two ends of each pair. The coupling of a flow is deterministic, so its paths cannot cross
(Theorem 3.3); rectifying it again straightens them (Theorem 3.6), and a straighter flow needs fewer ODE steps.

The student starts from the teacher's EMA weights (as the paper's 2-rectified flow does) and trains in the one loop,
as an ordinary run: ``difflab sample``, ``eval`` and the editing commands take it. The pairs are drawn once, with
the run's seed, and kept in the run as ``pairs.safetensors`` (with what drew them), so a resumed run trains on the
same pairs. For a class-conditional teacher each pair carries its label, the null label with probability
``train.label_dropout`` (the teacher then draws it unconditionally), so the student learns both.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .. import checkpoint
from ..config import with_defaults
from ..denoiser import build_denoiser, build_network
from ..errors import DifflabError
from ..pretrained import model_dir, read_model_config, read_model_record
from ..checkpoint import with_record
from ..io import atomic_path, write_json
from .diffusion import RESUMABLE_KEYS, DiffusionTrainable, _check_diffusion_run, load_teacher
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config

PAIRS = "pairs.safetensors"
#: how many samples the straightness report draws (fewer when the run has fewer pairs)
STRAIGHTNESS_SAMPLES = 512


def check_teacher(run_dir: str | Path) -> dict:
    """The config of a run that reflow can straighten: a flow-matching model (``diffusion.formulation: flow``) in
    data space; anything else is refused in one sentence."""
    config = read_model_config(run_dir)
    form = config.get("diffusion", {}).get("formulation")
    if form != "flow":
        raise DifflabError(f"reflow straightens a flow-matching model, but {str(run_dir)!r} was trained with "
                           f"diffusion.formulation {form!r}; train one with a flow preset (8gaussians-flow, digits-flow, "
                           "mnist-flow) or diffusion.formulation: flow.")
    if "latent" in config or config["data"].get("low_res_factor") or config["model"]["type"] == "text-unet":
        raise DifflabError(f"reflow takes unconditional and class-conditional flow models; {str(run_dir)!r} is a latent, "
                           "super-resolution or text-conditioned model.")
    if config.get("reflow"):
        config = {k: v for k, v in config.items() if k != "reflow"}  # a reflowed model may be reflowed again
    return config


def draw_pairs(denoiser, shape: tuple, n: int, sampler: str, steps: int, seed: int, num_classes: int | None,
               label_dropout: float, progress: bool = True, batch: int = 500) -> dict[str, torch.Tensor]:
    """n pairs {"eps": ε, "x0": ODE(ε), "labels"} from the deterministic ``sampler`` in ``steps`` steps, ε and the
    labels drawn from a generator seeded with ``seed``; the labels (only for a class-conditional teacher) are
    uniform over the classes, the null label ``num_classes`` with probability ``label_dropout``."""
    from ..progress import progress_bar
    from ..samplers import sample

    device = next(denoiser.model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn((n, *shape), generator=gen)
    labels = None
    if num_classes:
        labels = torch.randint(0, num_classes, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) < label_dropout] = num_classes
    out = torch.empty_like(eps)
    starts = range(0, n, batch)
    for start in progress_bar(starts, desc="drawing pairs", unit="batch", disable=not progress):
        part = slice(start, min(n, start + batch))
        den = denoiser if labels is None else denoiser.with_labels(labels[part].to(device))
        out[part] = sample(den, tuple(eps[part].shape), sampler=sampler, steps=steps, x_T=eps[part].to(device)).cpu()
    pairs = {"eps": eps, "x0": out}
    if labels is not None:
        pairs["labels"] = labels
    return pairs


class ReflowTrainable(DiffusionTrainable):
    """A flow model trained on fixed pairs (ε, x̂_0) of a teacher: x_t = (1 − t) x̂_0 + t ε with the pair's own ε
    (Liu et al. 2023, Eq. 1 with the teacher's coupling), labels as drawn with the pairs."""

    def __init__(self, config: dict, record: dict | None, out: Path, progress: bool = True):
        super().__init__(config, record)
        self.name = f"reflow {config['data']['name']}"
        self.out, self.progress = out, progress

    def _what_drew(self, teacher_step: int) -> dict:
        r = self.config["reflow"]
        return {"teacher": r["teacher"], "teacher_step": teacher_step, "pairs": r["pairs"], "sampler": r["sampler"],
                "steps": r["steps"], "seed": self.config["seed"]}

    def setup(self, device: torch.device) -> int:
        super().setup(device)
        r = self.config["reflow"]
        teacher_config = check_teacher(r["teacher"])
        teacher, _, step = load_teacher(r["teacher"], device, teacher_config)
        self.teacher_model, self.teacher_config = teacher, teacher_config
        pairs = self._read_pairs(self._what_drew(step))
        if pairs is None:
            denoiser = build_denoiser(teacher, with_record(teacher_config, self.record))
            k = self.config["model"].get("num_classes")
            pairs = draw_pairs(denoiser, tuple(self.data.shape[1:]), r["pairs"], r["sampler"], r["steps"],
                               self.config["seed"] + 7, k, self.config["train"]["label_dropout"], self.progress)
            self._write_pairs(pairs, self._what_drew(step))
        self.data = pairs["x0"].to(device)
        self.pair_noise = pairs["eps"].to(device)
        self.labels = pairs["labels"].to(device) if "labels" in pairs else None
        return self.data.shape[0]

    def _read_pairs(self, what: dict) -> dict | None:
        """The run's pairs if they were drawn as ``what`` says (else None: drawn again)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.out / PAIRS
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {}).get("drawn", "null"))
            pairs = load_file(str(path))
        except Exception:  # a damaged file is drawn again (atomic writes make this rare)
            return None
        if meta != what or pairs.get("x0") is None or pairs["x0"].shape[0] != what["pairs"]:
            return None
        return pairs

    def _write_pairs(self, pairs: dict, what: dict) -> None:
        from safetensors.torch import save_file

        with atomic_path(self.out / PAIRS) as tmp:
            save_file({k: v.contiguous() for k, v in pairs.items()}, str(tmp), metadata={"drawn": json.dumps(what)})

    def build(self) -> torch.nn.Module:
        """The teacher's network with its EMA weights (Liu et al. 2023 fine-tune the 1-rectified flow)."""
        model = build_network(self.config)
        model.load_state_dict(self.teacher_model.state_dict())
        return model

    def noise(self, idx: torch.Tensor, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.pair_noise[idx]

    def conditions(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        return None if self.labels is None else self.labels[idx]

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        super().finish(ema_model, out, step, log)
        report = straightness_report(self.teacher_model, ema_model, self.teacher_config, self.run_config,
                                     self.config["reflow"]["steps"], self.config["seed"])
        write_json(out / "straightness.json", report)
        log(f"straightness S (Liu et al. 2023, Eq. 8; 0 = straight paths) on {report['samples']} samples, "
            f"{report['euler_steps']} Euler steps: teacher {report['teacher']:.4g}, reflowed {report['reflowed']:.4g}")


def straightness_report(teacher: torch.nn.Module, student: torch.nn.Module, teacher_config: dict, config: dict,
                        steps: int, seed: int) -> dict:
    """The straightness of the teacher's and the reflowed model's paths from the same noise (and labels)."""
    from ..metrics.straightness import straightness

    n = min(STRAIGHTNESS_SAMPLES, config["reflow"]["pairs"])
    device = next(student.parameters()).device
    shape = tuple(config["latent"]["shape"]) if "latent" in config else tuple(config["normalization"]["shape"])
    gen = torch.Generator().manual_seed(seed + 11)
    x_T = torch.randn((n, *shape), generator=gen).to(device)
    k = config["model"].get("num_classes")
    labels = torch.randint(0, k, (n,), generator=gen).to(device) if k else None
    out = {"samples": n, "euler_steps": steps}
    for name, model, cfg in (("teacher", teacher, teacher_config), ("reflowed", student, config)):
        den = build_denoiser(model, cfg)
        den = den if labels is None else den.with_labels(labels)
        out[name], _ = straightness(den, x_T, steps)
    return out


def reflow(teacher: str | Path | None, out: str | Path, pairs: int | None = None, steps: int | None = None,
           sampler: str | None = None, ode_steps: int | None = None, seed: int | None = None, resume: bool = False,
           progress: bool = True, device: str | None = None, max_minutes: float | None = None, log=print) -> Path:
    """Reflow the flow model of run ``teacher`` into a new run ``out`` (or continue it with ``resume``, where
    ``teacher`` may be None): ``pairs`` pairs drawn with ``sampler`` in ``ode_steps`` steps (default: the teacher's
    sample section), then ``steps`` training steps (default: the teacher's train.steps). Returns ``out``."""
    out = Path(out)
    config = None
    if not resume or teacher is not None:
        if teacher is None:
            raise DifflabError("reflow needs the teacher ⟨run⟩ unless it resumes a run.")
        base = check_teacher(teacher)
        if pairs is None:
            raise DifflabError("reflow needs ⟨pairs⟩, the number of (noise, sample) pairs to draw from the teacher.")
        from ..checks import check_integer
        from ..samplers import get as get_sampler, info

        check_integer(pairs, "pairs")
        config = copy.deepcopy(base)
        config.pop("normalization", None)
        sampler = sampler or base["sample"]["sampler"]
        get_sampler(sampler)
        if info(sampler)["stochastic"]:
            raise DifflabError(f"reflow pairs noise with where the teacher's ODE takes it, so ⟨sampler⟩ must be "
                               f"deterministic; {sampler!r} draws fresh noise.")
        ode_steps = ode_steps or base["sample"]["steps"]
        check_integer(ode_steps, "ode_steps")
        config["reflow"] = {"teacher": str(model_dir(teacher).resolve()), "pairs": pairs, "sampler": sampler, "steps": ode_steps}
        config["diffusion"] = {**config["diffusion"], "ot_pairing": False}  # the teacher's coupling, not a new one
        if seed is not None and not resume:
            config["seed"] = seed
    config = prepare_run_config(out, config, resume, seed if resume else None, command="reflow",
                                resumable=RESUMABLE_KEYS, read=with_defaults,
                                check_saved=lambda saved: _check_diffusion_run(saved, out))
    if "reflow" not in config:
        raise DifflabError(f"{str(out)!r} is not a reflow run; resume it with difflab train.")
    tr = config["train"]
    if steps is not None:
        tr["steps"] = steps
    opts = LoopOptions.from_section(tr)
    check_run_length(None, max_minutes)
    record = checkpoint.read_record(out) if resume else read_model_record(config["reflow"]["teacher"])
    return fit(ReflowTrainable(config, record, out, progress), out, opts, config["seed"], resume=resume, device=device,
               progress=progress, max_minutes=max_minutes, log=log)

