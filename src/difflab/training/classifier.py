"""Training the noise-aware classifier of classifier guidance (Dhariwal & Nichol 2021, Sec. 4; their
``classifier_train.py``): cross-entropy of p_φ(y | x_t) on x_t = q_sample(x_0, t), t uniform over the
timesteps of the diffusion schedule the classifier will guide.

A classifier run is a directory like a diffusion run: ``config.json`` (the resolved config: the
``data``, the ``diffusion`` schedule, the data ``normalization`` — images in [−1, 1] — the
classifier's ``model`` config with ``type: classifier``, ``train`` and ``seed``), ``log.csv``,
``loss.png``, the checkpoints ``ckpt-<n>/`` of :mod:`difflab.training.checkpoint` (atomic,
checksummed, the last ``keep`` kept; ``ema.safetensors`` holds the EMA weights that guidance uses) and
``eval.json``: the accuracy on held-out images at t = 0, T/4 and T/2. Held out are the dataset's test
split (mnist, fashion-mnist, idx) or, for a set without one (digits), the last ``train.eval_num``
loaded examples, which are then left out of training. ``resume=True`` continues a run exactly
(optimizer, data order, generator states are checkpointed), bit for bit on the CPU.

Configs: the presets in :data:`PRESETS` (``digits-classifier``, ``mnist-classifier``,
``fashion-mnist-classifier``) or a YAML/TOML/JSON file with the same sections, which may start from
a preset (``preset: digits-classifier``). The ``diffusion`` section must be the one of the model
to guide (schedule, T, schedule_params): guidance refuses a classifier trained on another schedule.
One process; no torchrun.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import process
from ..checks import check_integer, check_number, fill_sections
from ..checkpoint import read_record, with_record
from ..data.normalization import Normalization
from ..denoiser import Preconditioning
from ..errors import DifflabError
from ..random import check_seed
from ..io import write_json
from ..objectives import uniform_timesteps
from ..random import randn
from ..saved import classifier_schedule
from ..sections import ClassifierDataSection, ClassifierDiffusionSection, ClassifierTrainSection, defaults
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config
from .trainable import Trainable

_DIGITS_LIKE = {"data": {"name": "digits"},
                "model": {"type": "classifier", "in_channels": 1, "image_size": 8, "base_channels": 32,
                          "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
                          "num_heads": 1, "num_classes": 10},
                "diffusion": {"schedule": "cosine", "T": 1000},
                "train": {"steps": 3000, "batch_size": 128, "lr": 1e-3, "warmup": 100, "log_every": 100,
                          "save_every": 1000, "eval_num": 297}}


def _mnist_like(name: str) -> dict:
    return {"data": {"name": name},
            "model": {"type": "classifier", "in_channels": 1, "image_size": 28, "base_channels": 32,
                      "channel_mult": [1, 2, 2], "num_res_blocks": 1, "attention_resolutions": [7],
                      "num_heads": 1, "num_classes": 10},
            "diffusion": {"schedule": "cosine", "T": 1000},
            "train": {"steps": 6000, "batch_size": 128, "lr": 5e-4, "warmup": 200, "log_every": 100,
                      "save_every": 1000, "eval_num": 2000}}


#: Classifier presets; their ``diffusion`` sections match the diffusion presets of the same data
#: (and the shipped mnist / fashion-mnist models).
PRESETS: dict[str, dict] = {
    "digits-classifier": _DIGITS_LIKE,
    "mnist-classifier": _mnist_like("mnist"),
    "fashion-mnist-classifier": _mnist_like("fashion-mnist"),
}

SECTIONS: dict[str, dict] = {"data": defaults(ClassifierDataSection), "diffusion": defaults(ClassifierDiffusionSection),
                             "train": defaults(ClassifierTrainSection)}
# keys that may differ between a run's config.json and the config it is resumed with
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "save_every", "keep")}
_HAS_TEST_SPLIT = ("digits", "mnist", "fashion-mnist", "idx")


def validate(config: dict) -> dict:
    """Fill defaults and check every key of a classifier config; return the complete config."""
    from .. import schedules
    from ..models.classifier import build_classifier, complete_classifier_config

    out = fill_sections(config, SECTIONS, {"model", "seed", "preset", "normalization"}, "classifier config")
    out["model"] = complete_classifier_config(config.get("model", {}) or {})
    if out["model"]["num_classes"] is not None:
        build_classifier(out["model"])  # raises on a bad value
    out["seed"] = config.get("seed", 0)
    if config.get("normalization") is not None:
        out["normalization"] = config["normalization"]
    if out["data"]["name"] is None:
        raise DifflabError("the classifier config needs 'data.name' (a labelled image dataset such as digits or mnist).")
    tr = out["train"]
    for key in ("steps", "batch_size", "log_every", "keep", "eval_num"):
        check_integer(tr[key], f"train.{key}")
    for key in ("warmup", "save_every"):
        check_integer(tr[key], f"train.{key}", 0)
    check_number(tr["lr"], "train.lr", positive=True)
    check_number(tr["weight_decay"], "train.weight_decay")
    check_number(tr["grad_clip"], "train.grad_clip", why="0 turns clipping off")
    check_number(tr["ema_decay"], "train.ema_decay", high=1)
    check_seed(out["seed"], "seed", headroom=1)
    d = out["diffusion"]
    schedules.get(d["schedule"], d["T"], **d["schedule_params"])  # raises on a bad schedule
    return out


def resolve(spec: str | dict) -> dict:
    """A classifier preset name, a config file path, or a dict -> a complete, validated config."""
    from ..config import PRESETS as DIFFUSION_PRESETS
    from ..config import resolve_spec

    hint = f" ({spec!r} is a diffusion preset; its classifier is {spec}-classifier)" \
        if isinstance(spec, str) and spec in DIFFUSION_PRESETS and f"{spec}-classifier" in PRESETS else ""
    return resolve_spec(spec, PRESETS, validate, "classifier", hint)


def _split(config: dict, seed: int):
    """(train images, train labels, held-out images, held-out labels, description of the held-out split)."""
    from ..data import load_dataset

    d, n_eval = config["data"], config["train"]["eval_num"]
    kw = {"root": d["root"], "image_size": d["image_size"], "channels": d["channels"], "seed": seed}
    train = load_dataset(d["name"], num=d["num"], **kw)
    if train.kind != "image":
        raise DifflabError(f"dataset {d['name']!r} holds {train.shape[0]}-D points; the classifier is for images.")
    if train.labels is None:
        raise DifflabError(f"dataset {d['name']!r} has no labels; a classifier needs a labelled dataset.")
    if d["name"] in _HAS_TEST_SPLIT:
        test = load_dataset(d["name"], num=n_eval, split="test", **kw)
        return train.data, train.labels, test.data, test.labels, f"the first {len(test)} test images", train
    if n_eval >= len(train):
        raise DifflabError(f"train.eval_num = {n_eval} holds out all {len(train)} loaded images of {d['name']!r}, "
                           "leaving none to train on; make it smaller.")
    cut = len(train) - n_eval
    return (train.data[:cut], train.labels[:cut], train.data[cut:], train.labels[cut:],
            f"the last {n_eval} of the {len(train)} loaded images (not trained on)", train)


class ClassifierTrainable(Trainable):
    """The noise-aware classifier: x_t = q_sample(x_0, t) for t uniform over the schedule, cross-entropy of its
    label, the network called through the same :class:`~difflab.denoiser.Preconditioning` as the model it will
    guide."""

    metrics = ("loss", "accuracy")

    def __init__(self, config: dict, record: dict | None = None):
        self.config, self.record = config, dict(record or {})
        self.name = f"train-classifier {config['data']['name']}"
        self.loss_title = f"{config['data']['name']} classifier: cross-entropy"
        self.schedule = classifier_schedule(config)
        self.preconditioning = Preconditioning(self.schedule)

    def setup(self, device: torch.device) -> int:
        config = self.config
        x_train, y_train, x_eval, y_eval, self.split, dataset = _split(config, config["seed"])
        top = int(dataset.labels.max())
        model_cfg = config["model"]
        if model_cfg["num_classes"] is None:  # read off the data, and recorded
            self.record["model"] = {"num_classes": self.record.get("model", {}).get("num_classes", top + 1)}
        elif top >= model_cfg["num_classes"] or int(dataset.labels.min()) < 0:
            raise DifflabError(f"dataset {dataset.name!r} has labels up to {top}, but model.num_classes is "
                               f"{model_cfg['num_classes']}; set it to at least {top + 1}.")
        c, h, w = dataset.shape
        if (model_cfg["in_channels"], model_cfg["image_size"], model_cfg["image_size"]) != (c, h, w):
            raise DifflabError(f"dataset {dataset.name!r} holds {c}x{h}x{w} images but the classifier expects "
                               f"{model_cfg['in_channels']}x{model_cfg['image_size']}x{model_cfg['image_size']}; "
                               "set model.in_channels and model.image_size to match.")
        norm = Normalization.fit("image", dataset.data)
        self.record["normalization"] = norm.to_config()
        self.run_config = with_record(config, self.record)
        self.data, self.labels = norm.to_model(x_train).to(device), y_train.long().to(device)
        self.x_eval, self.y_eval = norm.to_model(x_eval).to(device), y_eval.long().to(device)
        self.device = device
        return self.data.shape[0]

    def build(self) -> torch.nn.Module:
        from ..models.classifier import build_classifier
        return build_classifier(self.run_config["model"])

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        x0 = self.data[idx]
        t = uniform_timesteps(self.schedule, idx.shape[0], generator, self.device)
        return {"x_t": process.q_sample(self.schedule, x0, t, randn(x0.shape, generator, self.device, x0.dtype)),
                "t": t, "y": self.labels[idx]}

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        y = batch["y"][part]
        logits = self.preconditioning.call(net, batch["x_t"][part], batch["t"][part])
        return F.cross_entropy(logits, y, reduction="none"), {"accuracy": (logits.argmax(1) == y).float()}

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        _evaluate(ema_model, self.schedule, self.x_eval, self.y_eval, out, step, self.split, self.config["seed"], log)

    def finished(self, out: Path, step: int) -> bool:
        return (out / "eval.json").exists()


def train_classifier(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None,
                     resume: bool = False, device: str | None = None, progress: bool = True,
                     max_minutes: float | None = None, log=print) -> Path:
    """Train (or, with ``resume``, continue) the classifier run ``out``; returns ``out``.

    ``config``: a resolved config (:func:`resolve`), or None when resuming (the run's own is used).
    ``max_minutes`` stops this session after that long, with a checkpoint to resume from."""
    out = Path(out)
    if config is not None:
        config = validate(config)
    config = prepare_run_config(out, config, resume, seed, command="train-classifier", resumable=RESUMABLE_KEYS,
                                check_saved=lambda saved: _check_classifier_run(saved, out))
    check_run_length(steps, max_minutes)
    if steps is not None:
        config["train"]["steps"] = steps
    opts = LoopOptions.from_section(config["train"])
    return fit(ClassifierTrainable(config, read_record(out) if resume else None), out, opts, config["seed"], resume=resume, device=device, progress=progress,
               max_minutes=max_minutes, log=log)


def _check_classifier_run(saved: dict, out: Path) -> None:
    if not isinstance(saved.get("model"), dict) or saved["model"].get("type") != "classifier":
        raise DifflabError(f"{str(out)!r} is a diffusion run, not a classifier run; resume it with difflab train.")


def eval_times(schedule) -> list:
    """t = 0, T/4 and T/2 (for a continuous schedule: 0, t_max/4, t_max/2)."""
    if schedule.discrete:
        return [0, schedule.T // 4, schedule.T // 2]
    return [0.0, schedule.t_max / 4, schedule.t_max / 2]


@torch.no_grad()
def accuracy(model, schedule, x0: torch.Tensor, y: torch.Tensor, t, generator: torch.Generator,
             batch_size: int = 500) -> float:
    """The fraction of ``x0`` (model coordinates) whose noised x_t at time ``t`` the classifier labels ``y``."""
    model.eval()
    right = 0
    for lo in range(0, x0.shape[0], batch_size):
        xb, yb = x0[lo:lo + batch_size], y[lo:lo + batch_size]
        tb = torch.full((xb.shape[0],), t, dtype=torch.float64 if isinstance(t, float) else torch.long)
        x_t = process.q_sample(schedule, xb, tb, randn(xb.shape, generator, xb.device, xb.dtype))
        logits = Preconditioning(schedule).call(model, x_t, tb)
        right += int((logits.argmax(1) == yb).sum())
    return right / max(1, x0.shape[0])


def _evaluate(model, schedule, x0, y, out: Path, step: int, split: str, seed: int, log) -> dict:
    gen = torch.Generator().manual_seed(seed + 4321)
    rows = [{"t": t, "accuracy": accuracy(model, schedule, x0, y, t, gen)} for t in eval_times(schedule)]
    result = {"step": step, "weights": "ema", "held_out": split, "num": int(x0.shape[0]), "accuracy": rows}
    write_json(out / "eval.json", result)
    log("held-out accuracy (EMA weights, " + split + "): " +
        ", ".join(f"t={r['t']:g}: {100 * r['accuracy']:.1f}%" for r in rows))
    return result
