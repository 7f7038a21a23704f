"""The one training loop (Ho et al. 2020, Algorithm 1 and Appx. B: AdamW, warm-up, clipping, EMA weights),
shared by everything difflab trains: diffusion objectives, the noise-aware classifier, the autoencoder.

What it trains is a :class:`~difflab.training.trainable.Trainable`: it loads its data, builds its network, draws
the randomness of one global batch and returns per-example losses with the metrics to log. The loop owns the
rest: the step range and the time limit, learning-rate warm-up, gradient accumulation, torchrun DDP, bf16
autocast, ``torch.compile``, channels-last, the EMA, the clipped step, logging (CSV, TensorBoard when it is
installed, a progress bar), sample grids, atomic checkpoints and exact resume.

One optimizer step sees a global batch of B = ``batch_size`` examples. Their indices and every random draw of
the trainable are made for the whole batch from generators seeded by the run's seed; under torchrun each of N
processes keeps its slice of B/N (DDP averages the gradients), and with ``grad_accum`` = K each slice is fed
in K micro-batches whose gradients add up. So the number of processes and K change the float rounding, not the
run. Dropout draws from the global generator, reseeded every step from (seed, rank, step). A run killed at any
moment and resumed ends bit for bit where an uninterrupted one does (:class:`~difflab.training.state.TrainingState`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .. import checkpoint
from ..checks import check_integer, check_number
from ..errors import DifflabError, PeerLost
from ..io import write_json, write_text
from ..sections import LoopSection, LoopSettings
from . import distributed
from .ema import EMA
from .posthoc_ema import PowerEMA, check_sigma_rel, write_snapshot
from .run_config import make_run_dir, remove_stale_temp_files
from .state import DataOrder, TrainingState

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(kw_only=True)
class LoopOptions(LoopSection, LoopSettings):
    """How the loop runs: the keys of a completed ``train`` section that the loop reads
    (:class:`~difflab.sections.LoopSection`, each trainer's with its own defaults) and the
    :class:`~difflab.sections.LoopSettings` shared by all."""

    @classmethod
    def from_section(cls, train: dict) -> "LoopOptions":
        """The options a ``train`` section sets (its other keys belong to the trainable), checked."""
        opts = cls(**{f.name: train[f.name] for f in fields(cls) if f.name in train})
        opts.check()
        return opts

    def check(self) -> None:
        for key in ("steps", "batch_size", "log_every", "grad_accum", "keep"):
            check_integer(getattr(self, key), f"train.{key}")
        check_integer(self.warmup, "train.warmup", 0)
        for key in ("sample_every", "save_every"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DifflabError(f"⟨train.{key}⟩ must be an integer >= 0 (0: only at the end), got {v!r}.")
        check_number(self.lr, "train.lr", positive=True)
        check_number(self.grad_clip, "train.grad_clip", why="0 turns clipping off")
        check_number(self.ema_decay, "train.ema_decay", high=1)
        if not isinstance(self.posthoc_ema, list):
            raise DifflabError(f"⟨train.posthoc_ema⟩ must be a list of lengths σ_rel (e.g. [0.05, 0.1]), got "
                               f"{self.posthoc_ema!r}.")
        for i, sigma_rel in enumerate(self.posthoc_ema):
            check_sigma_rel(sigma_rel, f"train.posthoc_ema[{i}]")
        if len(set(self.posthoc_ema)) != len(self.posthoc_ema):
            raise DifflabError(f"⟨train.posthoc_ema⟩ lists a length twice: {self.posthoc_ema!r}.")
        v = self.posthoc_every
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise DifflabError(f"⟨train.posthoc_every⟩ must be an integer >= 0 (0: with every checkpoint), got {v!r}.")
        if self.posthoc_ema and not self.snapshot_every:
            raise DifflabError("⟨train.posthoc_ema⟩ needs snapshots during the run: set train.posthoc_every (or "
                               "train.save_every) to a number of steps.")
        if self.precision not in PRECISIONS:
            raise DifflabError(f"⟨train.precision⟩ must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        for key in ("compile", "channels_last"):
            if not isinstance(getattr(self, key), bool):
                raise DifflabError(f"⟨train.{key}⟩ must be true or false, got {getattr(self, key)!r}.")


    @property
    def snapshot_every(self) -> int:
        """Steps between post-hoc EMA snapshots."""
        return self.posthoc_every or self.save_every


def check_run_length(steps: int | None, max_minutes: float | None) -> None:
    """Refuse a ``--steps`` that is not a positive integer and a ``--max-minutes`` that is not a positive number."""
    if steps is not None:
        check_integer(steps, "train.steps")
    if max_minutes is not None:
        check_number(max_minutes, "max_minutes", positive=True)


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """A seed for the global generator (dropout) at one step of one rank, so a resumed run, on any
    number of processes, draws what an uninterrupted one does."""
    return ((seed * 1_000_003 + step) * 65_537 + rank) & 0x7FFF_FFFF_FFFF_FFFF


def warmup_lr(lr: float, warmup: int, step: int) -> float:
    """The learning rate at ``step`` (1-based) of a linear warm-up over ``warmup`` steps to ``lr``, then constant
    (Ho et al. 2020, Appx. B: 5,000 warm-up steps; Goyal et al. 2017, Sec. 2.2)."""
    return lr * min(1.0, step / warmup) if warmup > 0 else lr


def set_lr(lr: float, *optimizers: torch.optim.Optimizer) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def clipped_step(model: torch.nn.Module, opt: torch.optim.Optimizer, grad_clip: float) -> float:
    """Clip the gradients' global norm to ``grad_clip`` (0: no clipping), take the optimizer step; returns the
    norm before clipping."""
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    opt.step()
    return norm


def open_log(csv_path: Path, step: int, header: str):
    """``log.csv`` opened for appending at ``step``: the rows a resumed run will write again (after ``step``)
    and any row a killed process left half-written are dropped; a new log starts with ``header``."""
    width = header.count(",") + 1

    def keep(line: str) -> bool:
        fields_ = line.split(",")
        if len(fields_) != width or not fields_[0].isdigit() or int(fields_[0]) > step:
            return False
        try:
            [float(f) for f in fields_[1:]]
        except ValueError:
            return False
        return True

    old = csv_path.read_text().splitlines() if csv_path.exists() else []
    write_text(csv_path, "\n".join([header] + [ln for ln in old if keep(ln)]) + "\n")
    return open(csv_path, "a")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively. On x86 CPUs that takes the AVX512-BF16 or AMX
    instructions: without them oneDNN emulates bf16 in fp32 and autocast runs slower than fp32 itself."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True  # autocast itself refuses what the device cannot do
    import platform

    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 autocast on a device that would only emulate it, before any work."""
    if PRECISIONS[precision] is torch.bfloat16 and not native_bf16(device):
        where = "this CPU has neither AVX512-BF16 nor AMX" if device.type == "cpu" else f"this {device.type} device lacks it"
        raise DifflabError(f"⟨train.precision⟩ bf16 would run slower than fp32 here: {where}, so bfloat16 is only "
                           "emulated; use fp32.")


def _autocast(precision: str, device: torch.device):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    try:
        return torch.autocast(device_type=device.type, dtype=dtype)
    except RuntimeError as e:  # pragma: no cover - devices without bf16 autocast
        raise DifflabError(f"⟨train.precision⟩ {precision} is not supported on {device.type} ({e}).") from None


def _compile(net: torch.nn.Module) -> torch.nn.Module:
    try:
        return torch.compile(net)
    except Exception as e:
        raise DifflabError(f"torch.compile is not usable here ({str(e).strip().splitlines()[0][:200]}); "
                           "turn ⟨train.compile⟩ off.") from None


def _channels_last(net):
    """``net`` fed its image arguments in the channels-last memory format."""
    def to_memory(x):
        return x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.ndim == 4 else x

    def call(*args, **kwargs):
        return net(*[to_memory(a) for a in args], **{k: to_memory(v) for k, v in kwargs.items()})
    return call


def _is_peer_failure(e: RuntimeError) -> bool:
    """Whether an error of a collective (all-reduce, barrier) says that another process went away."""
    text = str(e)
    return any(s in text for s in ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
                                   "NCCL communicator was aborted", "ProcessGroupGloo", "gloo/transport"))


def _first_sentence(e: Exception) -> str:
    """The gist of a library's error: its first sentence, without a leading ``[source:line]``."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ")[0][:160]


def _tensorboard(out: Path, start: int):
    """A TensorBoard writer into the run directory, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError, or a broken tensorboard install: the CSV log is enough
        return None
    return SummaryWriter(log_dir=str(out), purge_step=start + 1 if start else None)


class _Log:
    """The CSV log, TensorBoard events and the progress bar of rank 0 (nothing on the other ranks)."""

    def __init__(self, trainable, out: Path, start: int, opts: LoopOptions, main: bool, progress: bool,
                 max_seconds: float | None = None):
        self.names = trainable.metrics
        self.csv = self.tb = self.bar = None
        self.steps, self.max_seconds, self.t0, self.postfix = opts.steps, max_seconds, time.perf_counter(), {}
        if not main:
            return
        self.csv = open_log(out / "log.csv", start, ",".join(["step", *self.names, "lr", "grad_norm", "seconds"]))
        self.tb = _tensorboard(out, start)
        if progress:
            from ..progress import progress_bar
            if max_seconds is None:
                self.bar = progress_bar(total=opts.steps, initial=start, desc=trainable.name, unit="step")
            else:  # a time-limited run ends with its minutes, or its steps if they come first: a bar in minutes
                self.bar = progress_bar(total=round(max_seconds / 60, 1), desc=trainable.name, unit="min",
                                        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min{postfix}")

    def tick(self, step: int) -> None:
        """Advance the bar by one step (by the minutes gone on a time-limited run)."""
        if self.bar is None:
            return
        if self.max_seconds is None:
            self.bar.update(1)
            return
        self.postfix["step"] = f"{step}/{self.steps}"
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(min(round((time.perf_counter() - self.t0) / 60, 1), self.bar.total) - self.bar.n)

    def row(self, step: int, means: list[float], lr: float, grad_norm: float, seconds: float) -> None:
        if self.csv is None:
            return
        self.csv.write(",".join([str(step), *(f"{m:.6g}" for m in means), f"{lr:.6g}", f"{grad_norm:.6g}",
                                 f"{seconds:.2f}"]) + "\n")
        self.csv.flush()
        if self.tb is not None:
            for name, value in (*zip(self.names, means), ("lr", lr), ("grad_norm", grad_norm)):
                self.tb.add_scalar(f"train/{name}", value, step)
            self.tb.flush()
        if self.bar is not None:
            self.postfix.update({n: f"{m:.4f}" for n, m in zip(self.names, means)})
            self.bar.set_postfix(self.postfix, refresh=False)

    def close(self) -> None:
        for thing in (self.csv, self.bar, self.tb):
            if thing is not None:
                thing.close()


def fit(trainable, out: str | Path, opts: LoopOptions, seed: int, resume: bool = False, device: str | None = None,
        progress: bool = True, max_minutes: float | None = None, log=print) -> Path:
    """Train ``trainable`` in the run directory ``out`` (continuing its newest valid checkpoint with ``resume``)
    for ``opts.steps`` steps or ``max_minutes``, whichever ends first; returns ``out``. Under torchrun every
    process calls this; rank 0 alone writes and logs."""
    out = Path(out)
    check_run_length(None, max_minutes)
    world = distributed.from_env()
    micro = distributed.check_split(opts.batch_size, world.world_size, opts.grad_accum)
    dev = distributed.pick_device(device, world)
    check_precision(opts.precision, dev)
    if not world.is_main:
        log = lambda *_: None  # noqa: E731
        progress = False
    world.start(dev)
    try:
        _Loop(trainable, out, opts, seed, world, dev, micro, log).run(resume, progress, max_minutes)
        world.barrier()  # every rank leaves together: the others wait for rank 0's last grid and checkpoint
        return out
    finally:
        world.stop()


class _Loop:
    """One session of training: the state built from the trainable, then steps until the target or the time
    limit, with logs, grids and checkpoints."""

    def __init__(self, trainable, out: Path, opts: LoopOptions, seed: int, world: distributed.World,
                 dev: torch.device, micro: int, log):
        self.trainable, self.out, self.opts, self.seed = trainable, out, opts, seed
        self.world, self.dev, self.micro, self.log = world, dev, micro, log
        n = trainable.setup(dev)
        torch.manual_seed(seed)  # the initial weights, alike on every rank
        model = trainable.build().to(dev)
        if opts.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = EMA(model, opts.ema_decay) if world.is_main else None
        self.posthoc = [PowerEMA(model, s) for s in opts.posthoc_ema] if world.is_main else []
        self.opt, *self.more_opts = trainable.optimizers(model)
        self.noise_gen = torch.Generator().manual_seed(seed + 1)
        data_gen = torch.Generator().manual_seed(seed)
        self.order = DataOrder(n, opts.batch_size, data_gen)
        self.state = TrainingState(model, self.ema, self.opt, data_gen, self.noise_gen, self.order, self.posthoc)
        self.width = len(trainable.metrics)
        self.window = [0.0] * self.width + [0]  # sums of each metric's step means not yet logged, and their count

    def restore(self, resume: bool) -> int:
        """The step to continue from: that of the newest valid checkpoint, restored, when resuming."""
        if resume and checkpoint.list_checkpoints(self.out):
            with warnings.catch_warnings():
                if not self.world.is_main:
                    warnings.simplefilter("ignore")
                ckpt = checkpoint.latest_valid(self.out)
            start, state, extra = self.state.restore(ckpt)
            self.window = list(state.get("log_window", self.window))
            self.trainable.load_state(extra, state)
            self.log(f"resuming {self.out} from step {start} ({ckpt.name})")
            return start
        if resume:
            self.log(f"{self.out} holds no checkpoint yet; starting it from step 0")
        return 0

    def prepare(self) -> None:
        """The network as the steps call it (DDP, compile, channels-last) and autocast."""
        self.ddp = self.world.wrap(self.model, self.dev)
        self.net = _compile(self.ddp) if self.opts.compile else self.ddp
        if self.opts.channels_last:
            self.net = _channels_last(self.net)
        self.autocast = _autocast(self.opts.precision, self.dev)

    def step(self, step: int) -> tuple[list[float], float, float]:
        """One optimizer step on the global batch; returns (this rank's metric sums, grad norm, lr)."""
        opts, world, trainable = self.opts, self.world, self.trainable
        lr = warmup_lr(opts.lr, opts.warmup, step)
        set_lr(lr, self.opt, *self.more_opts)
        torch.manual_seed(dropout_seed(self.seed, world.rank, step))
        trainable.begin_step(step)
        batch = trainable.draw(self.order.next().to(self.dev), self.noise_gen)
        self.opt.zero_grad(set_to_none=True)
        sums = torch.zeros(self.width, dtype=torch.float64, device=self.dev)
        per_rank = opts.batch_size // world.world_size
        lo = world.rank * per_rank
        for k in range(opts.grad_accum):
            part = slice(lo + k * self.micro, lo + (k + 1) * self.micro)
            sync = self.ddp.no_sync() if world.started and k < opts.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast:
                    losses, metrics = trainable.loss(self.net, batch, part)
                (losses.sum() / per_rank).backward()
            for i, name in enumerate(trainable.metrics):
                sums[i] += (losses if name == "loss" else metrics[name]).detach().double().sum()
        trainable.after_backward(batch, world, self.dev)
        grad_norm = clipped_step(self.model, self.opt, opts.grad_clip)
        if world.is_main:
            self.ema.update(self.model)
            for average in self.posthoc:
                average.update(self.model, step)
        trainable.after_step(step)
        return sums.tolist(), grad_norm, lr

    def first_step(self, step: int):
        """:meth:`step`, with a torch.compile failure turned into one clear sentence."""
        try:
            return self.step(step)
        except Exception as e:
            if self.opts.compile and type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise DifflabError(f"torch.compile could not build the model on this machine "
                                   f"({str(e).strip().splitlines()[0][:200]}); turn ⟨train.compile⟩ off.") from None
            raise

    def save(self, step: int) -> None:
        tensors, state = self.trainable.state()
        self.state.save(self.out, step, self.window, self.opts.keep, tensors=tensors,
                        state={"world_size": self.world.world_size, **state})

    def run(self, resume: bool, progress: bool, max_minutes: float | None) -> None:
        opts, world, main, trainable, out = self.opts, self.world, self.world.is_main, self.trainable, self.out
        start = self.restore(resume)
        if start >= opts.steps:
            self.log(f"{out} has already been trained for {start} steps (target {opts.steps}); nothing to do.")
            if main and start == opts.steps and not trainable.finished(out, start):  # killed after the last save
                trainable.finish(self.ema.model, out, start, self.log)
            return
        world.barrier()  # every rank has read the checkpoint before rank 0 writes a new one
        self.prepare()
        if main:
            make_run_dir(out)
            remove_stale_temp_files(out)
            write_json(out / "config.json", trainable.config)
            write_json(out / checkpoint.RECORD, trainable.record)
        max_seconds = None if max_minutes is None else 60.0 * max_minutes
        logger = _Log(trainable, out, start, opts, main, progress, max_seconds)
        t0, step, stopped, last = time.perf_counter(), start, False, [float("nan")] * self.width
        self.model.train()
        try:
            for step in range(start + 1, opts.steps + 1):
                sums, grad_norm, lr = (self.first_step if step == start + 1 else self.step)(step)
                time_up = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
                if world.started:  # the batch sums from every rank, and whether any rank ran out of time
                    *sums, up = world.sum([*sums, float(time_up)], self.dev)
                    time_up = up > 0
                self.window = [w + s / opts.batch_size for w, s in zip(self.window, sums)] + [self.window[-1] + 1]
                stopped = time_up and step < opts.steps
                logger.tick(step)
                if step % opts.log_every == 0 or step == opts.steps:
                    last = [w / self.window[-1] for w in self.window[:-1]]
                    self.window = [0.0] * self.width + [0]
                    logger.row(step, last, lr, grad_norm, time.perf_counter() - t0)
                if main and opts.sample_every and step % opts.sample_every == 0 and step != opts.steps:
                    trainable.sample_grid(self.ema.model, out, step)
                if main and self.posthoc and (step % opts.snapshot_every == 0 or step == opts.steps):
                    for average in self.posthoc:
                        write_snapshot(out, average, step)
                if main and ((opts.save_every and step % opts.save_every == 0) or step == opts.steps or stopped):
                    self.save(step)
                if stopped:
                    break
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run keeps its newest checkpoint
            e.kept = self.kept()
            raise
        except RuntimeError as e:  # under torchrun: a collective whose peer died fails here
            if not world.started or not _is_peer_failure(e):
                raise
            raise PeerLost(f"process {world.rank} of {world.world_size} lost another process of the run "
                           f"({_first_sentence(e)}); {self.kept()}.") from None
        finally:
            logger.close()
        if main:
            self.report(start, step, stopped, last, time.perf_counter() - t0, logger)

    def kept(self) -> str:
        """What an interrupted run keeps: its newest checkpoint."""
        ckpts = checkpoint.list_checkpoints(self.out)
        return (f"{self.out} keeps its checkpoint {ckpts[-1].name}; continue with --resume" if ckpts
                else f"{self.out} holds no checkpoint yet; --resume starts it over")

    def report(self, start: int, step: int, stopped: bool, last: list[float], wall: float, logger) -> None:
        """The loss plot, the closing line, and the trainable's finish of a run that reached its target."""
        from .. import plotting

        opts, out = self.opts, self.out
        plotting.plot_loss_curves_from_csv(out / "log.csv", out / "loss.png", title=self.trainable.loss_title)
        final = self.window[0] / self.window[-1] if self.window[-1] else last[0]
        done = step - start
        where = (f"stopped at the --max-minutes limit with a checkpoint at step {step}; continue with --resume"
                 if stopped else "done")
        extras = (f", {self.world.world_size} processes" if self.world.distributed else "") + \
            (f", TensorBoard events in {out}" if logger.tb is not None else "")
        self.log(f"trained {out}: step {step}/{opts.steps} ({done} step{'s' * (done != 1)} in {wall:.1f}s, "
                 f"{done * opts.batch_size / max(wall, 1e-9):.0f} examples/s{extras}), final loss {final:.4g}; {where}")
        if not stopped:
            self.trainable.finish(self.ema.model, out, step, self.log)


__all__ = ["LoopOptions", "PRECISIONS", "check_run_length", "dropout_seed", "warmup_lr", "set_lr", "clipped_step",
           "open_log", "fit"]
