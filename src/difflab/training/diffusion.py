"""Training a diffusion model: the :class:`DiffusionTrainable` that :func:`difflab.training.loop.fit` runs, and
:func:`train`, which resolves a run's config and options and starts the loop.

The objective is ``diffusion.loss``, looked up in :data:`difflab.objectives.LOSSES`: ``simple`` (L_simple, Ho et
al. 2020, Algorithm 1), or for a learned-variance network ``hybrid`` (L_simple + λ L_vlb) or ``vlb`` (Nichol &
Dhariwal 2021, Eq. 16 and Sec. 3.3). Every objective calls the network through the run's
:class:`~difflab.denoiser.ModelDenoiser`, the one preconditioning path that sampling uses too.
``train.timestep_sampler`` draws t uniformly or by the loss second moment; per-example losses are weighted by
its importance weights (the logged loss is the weighted mean, an estimate of the uniform-t average), and it is
updated with the unweighted losses of the whole global batch, so every process keeps the same state.

A run directory holds ``config.json`` (the resolved config, with the data normalisation and the options the run
was trained with), ``log.csv``, ``loss.png``, ``samples/step_<n>.png`` and the checkpoints ``ckpt-<n>/``.
Options recorded in ``config.json``'s train section besides the config keys: ``precision`` (fp32, or bf16
autocast), ``grad_accum``, ``compile`` (torch.compile) and ``channels_last``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .. import objectives, timestep_sampling
from ..checkpoint import load_into, read_record, with_record
from ..config import with_defaults
from ..data import load_dataset
from ..data.normalization import Normalization
from ..denoiser import build_denoiser, build_network
from ..errors import DifflabError
from ..random import randn
from ..sections import RUN_OPTIONS, LoopSettings, defaults
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config
from .trainable import Trainable

# keys that may differ between a run's config.json and the config it is resumed with
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "sample_every", "save_every", "keep", "num_samples",
                                         *RUN_OPTIONS)} | {"latent.scale_factor", "latent.shape", "latent.clip"}
#: the time distributions drawn for the global batch directly (no sampler state): uniform, EDM's, rectified flow's,
#: VDM's antithetic ones
CONTINUOUS_TIMES = ("uniform", "lognormal", "logit-normal", "antithetic", "consistency")
LOSS_NAMES = {"simple": "L_simple", "hybrid": "L_hybrid", "vlb": "L_vlb", "vdm": "VLB (bits/dim)"}


class DiffusionTrainable(Trainable):
    """A diffusion model on its data: x_0, t, ε and (dropped) labels are drawn for the global batch; the loss is
    the config's objective through the run's preconditioned network."""

    def __init__(self, config: dict, record: dict | None = None):
        self.config, self.record = config, dict(record or {})
        self.name = f"train {config['data']['name']}"
        self.loss_title = f"{config['data']['name']}: {LOSS_NAMES.get(config['diffusion']['loss'], config['diffusion']['loss'])}"
        diff, tr = config["diffusion"], config["train"]
        self.objective = objectives.LOSSES[diff["loss"]]
        name = tr["timestep_sampler"]
        # uniform t is drawn by uniform_timesteps (also for continuous schedules), except for the IDDPM objectives,
        # which, like importance sampling, draw t from a timestep sampler (IDDPM Sec. 3.3)
        self.t_sampler = None if diff["loss"] not in objectives.LEARNED_VARIANCE and name in CONTINUOUS_TIMES \
            else timestep_sampling.get(name, diff["T"])
        self.gather = self.t_sampler is not None and type(self.t_sampler) is not timestep_sampling.UniformSampler
        self.step = 1

    def dataset(self):
        """The training data (a :class:`~difflab.data.Dataset`): the config's data section, loaded."""
        d = self.config["data"]
        return load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=d["num"],
                            seed=self.config["seed"])

    def setup(self, device: torch.device) -> int:
        config = self.config
        dataset = self.dataset()
        known = self.record.get("normalization") or config.get("normalization")  # older runs kept it in the config
        self.norm = Normalization.from_config(known) if known else Normalization.fit(dataset.kind, dataset.data)
        self.record["normalization"] = self.norm.to_config()
        if "latent" in config:  # latent diffusion: the data become the autoencoder's scaled latents (difflab.latent)
            from ..latent import encode_dataset
            dataset, self.data, self.record["latent"] = encode_dataset(with_record(config, self.record), dataset,
                                                                       self.norm, device)
        else:
            self.data = self.norm.to_model(dataset.data).to(device)
        self.dataset, self.device = dataset, device
        _check_model_fits(config["model"], dataset)
        num_classes = config["model"].get("num_classes")
        self.labels = _check_labels(dataset, num_classes).to(device) if num_classes else None
        self.null = num_classes
        if config["model"]["type"] == "text-unet":  # the captions' word ids; the null prompt is all padding (id 0)
            self.labels, self.null = _prompt_ids(config["model"], dataset).to(device), 0
        self.run_config = with_record(config, self.record)  # the config a loaded run will see
        self.schedule = build_denoiser(None, self.run_config).schedule
        return self.data.shape[0]

    def build(self) -> torch.nn.Module:
        from ..denoiser import build_network
        return build_network(self.config)

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        from ..data.lowres import condition

        x0 = self.data[idx]
        batch_size = idx.shape[0]
        extra = {}
        if self.config["train"]["timestep_sampler"] == "consistency":  # neighbouring levels of iCT's curriculum
            t, extra["t_next"] = objectives.consistency_timesteps(self.schedule, batch_size, generator, self.device,
                                                                  step=self.step, total_steps=self.config["train"]["steps"])
            weights = None
        elif self.t_sampler is None:  # drawn as l_simple draws them, or EDM's log-normal σ
            draw = {"lognormal": objectives.lognormal_timesteps, "logit-normal": objectives.logit_normal_timesteps,
                    "antithetic": objectives.antithetic_timesteps}.get(self.config["train"]["timestep_sampler"],
                                                                       objectives.uniform_timesteps)
            t, weights = draw(self.schedule, batch_size, generator, self.device), None
        else:  # t ~ p_t with importance weights 1/(T p_t), all 1 for the uniform sampler
            t, weights = self.t_sampler.sample(batch_size, generator, self.device)
        eps = self.noise(idx, x0, generator)
        y = self.conditions(idx, generator)
        factor = self.config["data"].get("low_res_factor")
        cond = condition(x0, factor) if factor else None  # SR3's conditioning image (data.low_res_factor)
        per_t = torch.zeros(batch_size, dtype=torch.float64) if self.gather else None  # unweighted, for the sampler
        return {"x0": x0, "t": t, "eps": eps, "y": y, "cond": cond, "weights": weights, "per_t": per_t, "extra": extra}

    def begin_step(self, step: int) -> None:
        self.step = step

    def noise(self, idx: torch.Tensor, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ε of each example, fresh from ``generator`` (paired with the data by minibatch OT when
        ``diffusion.ot_pairing`` is on; Tong et al. 2024)."""
        eps = randn(x0.shape, generator, self.device, x0.dtype)
        return objectives.ot_pairing(x0, eps) if self.config["diffusion"]["ot_pairing"] else eps

    def conditions(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """The labels (or prompts) of the examples, each replaced by the null one with probability
        ``train.label_dropout``; None for an unconditional model."""
        if self.labels is None:
            return None
        return drop_labels(self.labels[idx], self.config["train"]["label_dropout"], self.null, generator)

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        denoiser = build_denoiser(net, self.run_config)
        y, cond = batch["y"], batch["cond"]
        extra = {} if cond is None else {"cond": cond[part]}
        extra.update({k: v[part] for k, v in batch.get("extra", {}).items()})
        losses = self.objective(denoiser, batch["x0"][part], t=batch["t"][part], eps=batch["eps"][part],
                                y=None if y is None else y[part], settings=self.config["diffusion"], **extra)
        if batch["per_t"] is not None:
            batch["per_t"][part] = losses.detach().double().cpu()
        if batch["weights"] is not None:
            losses = losses * batch["weights"][part]
        return losses, {}

    def after_backward(self, batch: dict, world, device: torch.device) -> None:
        if batch["per_t"] is not None:  # every rank records the global batch, so all keep the same sampler state
            per_t = batch["per_t"]
            self.t_sampler.update(batch["t"], world.sum(per_t.tolist(), device) if world.started else per_t)

    def state(self) -> tuple[dict, dict]:
        tensors = {} if self.t_sampler is None else {f"sampler.{k}": v for k, v in self.t_sampler.state_dict().items()}
        return tensors, {}

    def load_state(self, tensors: dict, state: dict) -> None:
        if self.t_sampler is not None:
            self.t_sampler.load_state_dict({k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")})

    def sample_grid(self, ema_model: torch.nn.Module, out: Path, step: int) -> None:
        _write_samples(self.run_config, self.norm, build_denoiser(ema_model, self.run_config), _grid_path(out, step),
                       self.config["train"]["num_samples"], self.config["seed"], self.dataset)

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        self.sample_grid(ema_model, out, step)

    def finished(self, out: Path, step: int) -> bool:
        return _grid_path(out, step).exists()


class StudentTrainable(DiffusionTrainable):
    """A student trained against a frozen teacher (distillation): the run named in ``distill.teacher`` (its EMA
    network, loaded in :meth:`setup`), or ``teacher``, a denoiser given directly (tests give exact ones). The
    student's times come from a fixed grid, so no timestep sampler keeps state."""

    def __init__(self, config: dict, record: dict | None = None, teacher=None):
        super().__init__(config, record)
        self.teacher = teacher

    def setup(self, device: torch.device) -> int:
        n = super().setup(device)
        if self.teacher is None:
            self.teacher_net, teacher_config, _ = load_teacher(self.config["distill"]["teacher"], device)
            self.teacher = build_denoiser(self.teacher_net, teacher_config)
        return n

    def after_backward(self, batch: dict, world, device: torch.device) -> None:
        """Nothing: the times come from the student's grid, not from a timestep sampler with state."""


def _grid_path(out: Path, step: int) -> Path:
    return out / "samples" / f"step_{step:08d}.png"


def train(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None, resume: bool = False,
          progress: bool = True, device: str | None = None, log=print, *, log_every: int | None = None,
          sample_every: int | None = None, save_every: int | None = None, max_minutes: float | None = None,
          precision: str | None = None, grad_accum: int | None = None, compile_model: bool | None = None,
          channels_last: bool | None = None) -> Path:
    """Train the model a resolved config describes, in run directory ``out``; return ``out``.

    With ``resume=True`` the run in ``out`` continues from its newest valid checkpoint (from step
    0 if it has none yet) with its own config.json; a ``config`` given then must match it apart
    from the run-length and logging keys (and its seed: the run's own is kept). Keyword options override the
    train section and are recorded in config.json; ``max_minutes`` (not recorded) stops this session after that
    long, with a checkpoint to resume from. ``device`` None means cuda when available, else cpu. Under
    torchrun every process calls this; rank 0 alone writes and logs.
    """
    out = Path(out)
    config = prepare_run_config(out, config, resume, seed, command="train", resumable=RESUMABLE_KEYS,
                                read=with_defaults, check_saved=lambda saved: _check_diffusion_run(saved, out))
    tr = config["train"]
    for key, default in defaults(LoopSettings).items():
        tr.setdefault(key, default)
    options = {"steps": steps, "log_every": log_every, "sample_every": sample_every, "save_every": save_every,
               "precision": precision, "grad_accum": grad_accum, "compile": compile_model, "channels_last": channels_last}
    tr.update({k: v for k, v in options.items() if v is not None})
    opts = LoopOptions.from_section(tr)
    check_run_length(None, max_minutes)
    record = read_record(out) if resume else None
    return fit(DiffusionTrainable(config, record), out, opts, config["seed"], resume=resume, device=device, progress=progress,
               max_minutes=max_minutes, log=log)


def load_teacher_weights(net: torch.nn.Module, run_dir: str | Path) -> int:
    """Load a teacher's EMA weights into ``net`` (a run directory's newest valid checkpoint, an exported model or a
    shipped model's name); returns the step they were taken at."""
    from ..pretrained import read_model

    _, _, state, step, where = read_model(run_dir, "ema")
    load_into(net, state, where, "teacher")
    return step


def load_teacher(run_dir: str | Path, device, config: dict | None = None) -> tuple[torch.nn.Module, dict, int]:
    """A teacher's EMA network, frozen (eval mode, no gradients) on ``device``, its config with defaults (``config``
    when the caller has checked it already) and the step of the checkpoint it came from: what distillation and reflow
    read from their teacher, a run directory, an exported model or a shipped model's name."""
    from ..pretrained import read_model_config

    config = read_model_config(run_dir) if config is None else config
    net = build_network(config)
    step = load_teacher_weights(net, run_dir)
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, config, step


def _check_diffusion_run(saved: dict, out: Path) -> None:
    """Refuse to resume a classifier or autoencoder run as a diffusion run, naming the command that made it."""
    model = saved.get("model") if isinstance(saved.get("model"), dict) else {}
    if model.get("type") == "classifier":
        raise DifflabError(f"{str(out)!r} is a classifier run, not a diffusion run; resume it with difflab train-classifier.")
    if saved.get("kind") == "autoencoder":
        raise DifflabError(f"{str(out)!r} is an autoencoder run, not a diffusion run; resume it with difflab "
                           "train-autoencoder.")


def split_run_options(raw: dict) -> tuple[dict, dict]:
    """A raw config (a file's mapping, such as a run's config.json) without the run options in its
    train section, and those options: so a config file may set them and a run's config.json can
    be given as a config again."""
    raw = copy.deepcopy(raw)
    tr = raw.get("train")
    options = {k: tr.pop(k) for k in RUN_OPTIONS if k in tr} if isinstance(tr, dict) else {}
    return raw, options


def drop_labels(y: torch.Tensor, p: float, null: int, generator: torch.Generator) -> torch.Tensor:
    """Replace each label by the null label ``null`` with probability ``p``, so one network learns
    the conditional and the unconditional model (Ho & Salimans 2022, Algorithm 1, p_uncond). For
    prompts (word ids, one row per example) a dropped row becomes all ``null`` = 0, the empty prompt."""
    drop = torch.rand(y.shape[0], generator=generator).to(y.device) < p
    return torch.where(drop.reshape(-1, *[1] * (y.ndim - 1)), torch.full_like(y, null), y)


def _prompt_ids(model_cfg: dict, dataset) -> torch.Tensor:
    """The word ids (N, context_length) of a captioned dataset's captions, by a text-unet's tokenizer (a row
    of ``drop_labels`` above becomes the empty prompt, the null condition)."""
    from ..tokenizer import WordTokenizer

    if dataset.captions is None:
        raise DifflabError(f"a text-unet learns from captions, but dataset {dataset.name!r} has none; use a captioned "
                           "dataset such as mnist-pairs.")
    tokenizer = WordTokenizer(model_cfg["vocabulary"], model_cfg["context_length"])
    return tokenizer.batch(dataset.captions, strict=True)


def _check_labels(dataset, num_classes: int) -> torch.Tensor:
    """The dataset's labels for a class-conditional model, checked against ``num_classes``."""
    if dataset.labels is None:
        raise DifflabError(f"model.num_classes = {num_classes} asks for a class-conditional model, but dataset "
                           f"{dataset.name!r} has no labels.")
    top = int(dataset.labels.max())
    if int(dataset.labels.min()) < 0 or top >= num_classes:
        raise DifflabError(f"dataset {dataset.name!r} has labels up to {top}, but model.num_classes is {num_classes}; "
                           f"set it to at least {top + 1}.")
    return dataset.labels.long()


def _check_model_fits(model_cfg: dict, dataset) -> None:
    shape = dataset.shape
    if dataset.kind == "toy":
        if model_cfg["type"] != "mlp" or model_cfg.get("dim") != shape[0]:
            raise DifflabError(f"dataset {dataset.name!r} holds {shape[0]}-D points; the model must be an mlp with dim {shape[0]}.")
        return
    if model_cfg["type"] not in ("unet", "text-unet"):
        raise DifflabError(f"dataset {dataset.name!r} holds images; the model must be a unet.")
    c, h, w = shape
    if model_cfg["in_channels"] != c or model_cfg["image_size"] != h or (h != w and model_cfg["type"] == "unet"):
        raise DifflabError(f"dataset {dataset.name!r} holds {c}x{h}x{w} images but the model expects "
                           f"{model_cfg['in_channels']}x{model_cfg['image_size']}x{model_cfg['image_size']}; "
                           "set model.in_channels and model.image_size to match.")


def _write_samples(config, norm, denoiser, path: Path, num: int, seed: int, dataset) -> None:
    """A fixed-noise grid (images) or scatter (toys) from the EMA model, to watch training."""
    from ..plotting import save_samples
    from ..samplers import sample

    sc = config["sample"]
    gen = torch.Generator().manual_seed(seed + 12345)
    opts = {"eta": sc["eta"]} if sc["sampler"] == "ddim" else {}
    device = next(denoiser.model.parameters()).device
    k = config["model"].get("num_classes")
    if k:  # a class-conditional model shows each class in turn (row i of a 10-wide grid: class i % k)
        denoiser = denoiser.with_labels(torch.arange(num) // max(1, int(num ** 0.5 + 0.5)) % k)
    factor = config["data"].get("low_res_factor")
    if factor:  # an SR3 model upscales the first training images
        from ..data.lowres import condition
        from ..models.conditioned import ConditionedNet
        cond = norm.to_model(condition(dataset.data[:num], factor)).to(device)
        denoiser = build_denoiser(ConditionedNet(denoiser.model, cond), config)
        num = cond.shape[0]
    if config["model"]["type"] == "text-unet":  # a text model draws the captions of the first training examples
        num = min(num, len(dataset))
        denoiser = denoiser.with_labels(denoiser.model.tokenizer.batch(dataset.captions[:num]).to(device))
    shape = tuple(config["latent"]["shape"]) if "latent" in config else norm.shape
    x = sample(denoiser, (num, *shape), sampler=sc["sampler"], steps=sc["steps"], generator=gen, device=device, **opts)
    if "latent" in config:
        from ..latent import load_codec
        x = load_codec(config, device).decode(x)
    reference = dataset.data[:num] if dataset.kind == "toy" else None
    save_samples(norm.to_data(x).cpu(), path, norm.kind, reference=reference)
