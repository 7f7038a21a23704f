"""What the reproductions share: a context (where to write, where runs live, quick or full), training or
reusing a run, drawing samples with per-sample seeds, scoring them, and writing the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch


# the datasets a reproduction may run on (``difflab reproduce NAME --dataset``), with the number of samples each cell
# scores against as many held-out test images: all 450 test digits; on MNIST 1,000, where the real-vs-real floor's
# sd (0.18, benchmarks/results/fd_floors.md) is a tenth of the digits one at 450
SCALES = {"digits": {"num": 450}, "mnist": {"num": 1000}}


@dataclass
class Context:
    """One reproduction's invocation. ``--quick`` shrinks every scale to a smoke test: two training seeds instead of
    three, 130 samples instead of the 450 held-out test digits, 120 training steps (:meth:`length`)."""

    name: str
    out: Path
    runs: Path
    quick: bool
    command: str
    dataset: str = "digits"

    def __post_init__(self):
        self.started = time.perf_counter()

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds a verdict is taken over (:data:`difflab.reproduce.claims.SEEDS`)."""
        from .claims import SEEDS

        return SEEDS[:2] if self.quick else SEEDS

    @property
    def num(self) -> int:
        """Samples per measured cell (130 with ``--quick``): :data:`SCALES`."""
        return 130 if self.quick else SCALES[self.dataset]["num"]

    @property
    def stem(self) -> str:
        """The file names' stem: the reproduction's name, with ``-<dataset>`` beyond digits (``schedules-mnist``)."""
        return self.name if self.dataset == "digits" else f"{self.name}-{self.dataset}"

    def length(self, full: int, quick: int = 120) -> int:
        """A training length: ``full`` steps, or ``quick`` with ``--quick``."""
        return quick if self.quick else full


def run_or_train(ctx: Context, run_name: str, config: dict, steps: int, seed: int = 0):
    """The run in ``ctx.runs / run_name`` trained for ``steps`` steps: loaded when it is exactly that far (one
    further along is refused: its numbers would be another length's), resumed when a checkpoint stops short of it (a
    killed reproduction, or a longer length asked of the same run: the warm-up then constant learning rate makes that
    the same as one longer run) or when it was killed before its first checkpoint (started over with its own seed),
    trained from scratch with ``seed`` otherwise. Returns (the loaded run, whether it was reused as it was)."""
    from ..run import load
    from .. import checkpoint
    from ..training.diffusion import train

    path = ctx.runs / run_name
    if path.exists() and checkpoint.list_checkpoints(path):
        run = load(path)
        if run.step == steps:
            return run, True
        if run.step > steps:
            from ..errors import DifflabError
            raise DifflabError(f"{path} is at training step {run.step}, past the {steps} steps {ctx.name} measures at; "
                               "move it aside (or pass another --runs) and run again.")
        print(f"[{ctx.name}] resuming {run_name} from step {run.step} to {steps}")
        train(None, path, steps=steps, resume=True, progress=True)
        return load(path), False
    if (path / "config.json").is_file():  # killed before its first checkpoint: resuming starts it over, same seed
        print(f"[{ctx.name}] {run_name} holds no checkpoint yet; training it from step 0 to {steps}")
        train(config, path, steps=steps, resume=True, progress=True)
        return load(path), False
    print(f"[{ctx.name}] training {run_name} (seed {seed}) for {steps} steps into {path}")
    train(config, path, steps=steps, seed=seed, progress=True)
    return load(path), False


class Measures:
    """A reproduction's measured numbers, kept in ``<runs>/<name>-measures.json`` as they come, so that a killed
    reproduction resumes where it stopped: ``get(key, compute)`` returns the stored value or computes, stores
    (atomically) and returns it. ``--quick`` keeps its own file."""

    def __init__(self, ctx: Context):
        from ..io import read_json_mapping

        self.path = ctx.runs / f"{ctx.stem}{'-quick' if ctx.quick else ''}-measures.json"
        self.values = read_json_mapping(self.path, "measures file") if self.path.exists() else {}
        self.ctx, self.minutes_before = ctx, float(self.values.get("_minutes", 0.0))
        ctx.measures = self  # write_report states the time over every invocation

    def get(self, key: str, compute):
        import json

        from ..io import write_text

        if key not in self.values:
            self.values[key] = compute()
            self.values["_minutes"] = self.minutes_before + (time.perf_counter() - self.ctx.started) / 60
            write_text(self.path, json.dumps(self.values, indent=1) + "\n")
        return self.values[key]


def floors(dataset: str, num: int, metrics=("fd",), repeats: int = 50) -> dict:
    """The real-vs-real floors at ``num`` against the first ``num`` test images, in the dataset judge's features:
    {metric: {"mean", "sd", "n", "repeats"}} (:func:`difflab.evaluate.real_floor`)."""
    from ..evaluate import feature_extractor, real_floor

    extractor, key = feature_extractor(dataset)
    out = {}
    for metric in metrics:
        f = real_floor(dataset, extractor, num, key=key, repeats=repeats, metric=metric)
        out[metric] = {"mean": f.mean, "sd": f.sd, "n": num, "repeats": repeats}
    return out


def floor_band(ax, floor: dict, label: str = "real-vs-real floor ± 2 sd"):
    """Shade the real-vs-real floor (``{"mean", "sd"}``) ± the verdict margin on a plot of scores: a setting whose
    score lies in the band is as close to the data as a second set of real images."""
    from .claims import MARGIN_FLOOR_SDS

    k = MARGIN_FLOOR_SDS
    ax.axhspan(floor["mean"] - k * floor["sd"], floor["mean"] + k * floor["sd"], color="0.85", label=label, zorder=0)


def preset(name: str, **sections) -> dict:
    """A preset's config with some sections updated, e.g. ``preset("digits", diffusion={"schedule": "linear"})``."""
    from ..config import resolve

    return resolve({"preset": name, **sections})


def draw(run, num: int, seed: int = 0, batch: int = 500, **sample_options) -> torch.Tensor:
    """``num`` samples in data coordinates, sample i from seed ``seed * 1_000_003 + i`` alone, so every setting
    of a table starts from the same noise; with a list of ``classes``, sample i gets ``classes[i % len]`` whatever
    the batch."""
    from ..random import per_sample_generators

    out, classes = [], sample_options.pop("classes", None)
    for lo in range(0, num, batch):
        n = min(batch, num - lo)
        gens = per_sample_generators(seed, lo, n, num)
        if isinstance(classes, (list, tuple)):
            sample_options["classes"] = [classes[(lo + i) % len(classes)] for i in range(n)]
        elif classes is not None:
            sample_options["classes"] = classes
        out.append(run.sample(n, generator=gens, **sample_options))
    return torch.cat(out)


def scores(samples: torch.Tensor, dataset: str, num_ref: int, metrics: str = "fd,pr,is") -> dict:
    """FD, precision, recall and IS of ``samples`` in the dataset judge's features, with short keys."""
    from ..evaluate import evaluate_samples

    s = evaluate_samples(samples, dataset, metrics, num_ref=num_ref)
    tag = s["extractor"]
    short = {"fd": f"FD[{tag}]", "precision": f"precision[{tag}]", "recall": f"recall[{tag}]", "is": f"IS[{tag}]",
             "kid": f"KID[{tag}]"}
    return {k: s[v] for k, v in short.items() if v in s} | {"extractor": tag}


def minutes(ctx: Context) -> tuple[float, float]:
    """(minutes over every invocation that trained and measured, minutes of this one)."""
    this = (time.perf_counter() - ctx.started) / 60
    measures = getattr(ctx, "measures", None)
    return (measures.minutes_before if measures is not None else 0.0) + this, this


def store_claims(ctx: Context, claims: list, **info) -> Path:
    """``<out>/<name>.json``: the claims with every per-seed number, the command, quick mode and the minutes spent
    over every invocation (:func:`difflab.reproduce.claims.write_claims`)."""
    from .claims import write_claims

    return write_claims(ctx.out / f"{ctx.stem}.json", ctx.stem, ctx.command, claims, quick=ctx.quick,
                        minutes=round(minutes(ctx)[0], 1), threads=torch.get_num_threads(), **info)


def write_report(ctx: Context, title: str, lines: list[str]) -> Path:
    """``<out>/<name>.md``: the title, the command that regenerates it, date and wall time, then ``lines``."""
    from ..io import write_text

    total, this = minutes(ctx)
    if total > this + 1e-9:
        minutes_text = (f"{total:.1f} min in all on this machine, over the invocations that "
                        f"trained and measured (this one {this:.1f} min)")
    else:
        minutes_text = f"{this:.1f} min on this machine"
    head = [f"# {title}", "", f"Command: `{ctx.command}`  ",
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}, {minutes_text} (CPU, "
            f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}){' — QUICK MODE: too little training to judge the claim' if ctx.quick else ''}", ""]
    path = ctx.out / f"{ctx.stem}.md"
    write_text(path, "\n".join(head + lines) + "\n")
    print(f"[{ctx.name}] wrote {path}")
    return path


def figure_path(ctx: Context, suffix: str = "") -> Path:
    ctx.out.mkdir(parents=True, exist_ok=True)
    return ctx.out / f"{ctx.stem}{suffix}.png"
