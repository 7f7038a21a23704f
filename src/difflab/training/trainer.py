"""The training loop: L_simple with AdamW, warm-up, gradient clipping and EMA weights
(Ho et al. 2020, Algorithm 1 and Appx. B), logged to CSV (and TensorBoard when it is installed),
with sample grids and atomic checkpoints.

``diffusion.loss`` picks the objective: ``simple`` (L_simple), or for a learned-variance network
``hybrid`` (L_simple + λ L_vlb) or ``vlb`` (Nichol & Dhariwal 2021, Eq. 16 and Sec. 3.3; see
:func:`difflab.variational_bound.hybrid_losses`). ``train.timestep_sampler`` draws t uniformly or by
the loss second moment; per-example losses are weighted by its importance weights (the logged loss is
the weighted mean, an estimate of the uniform-t average), and it is updated with the unweighted
losses of the whole global batch, so every process keeps the same state.

A run directory holds ``config.json`` (the resolved config, with the data normalisation and the
options the run was trained with), ``log.csv``, ``loss.png``, ``samples/step_<n>.png`` and the
checkpoints ``ckpt-<n>/``. The trainer state (optimizer moments, data order, generator states,
the half-filled log window, the timestep sampler's loss history) is saved with the weights, so
``resume=True`` continues a run exactly: a run killed at any moment and resumed ends bit for bit where an uninterrupted one does.

One optimizer step sees a global batch of B = ``train.batch_size`` examples. Their indices,
timesteps and noise are drawn for the whole batch from generators seeded by the run's seed;
under torchrun each of N processes keeps its slice of B/N (DDP averages the gradients), and with
``grad_accum`` = K each slice is fed to the model in K micro-batches whose gradients add up. So
the number of processes and K change the float rounding, not the run. Dropout draws from the
global generator, reseeded every step from (seed, rank, step).

Options recorded in ``config.json``'s train section besides the config keys: ``precision``
(fp32, or bf16 autocast), ``grad_accum``, ``compile`` (torch.compile) and ``channels_last``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
import warnings
from pathlib import Path

import torch

from ..errors import DifflabError
from ..io import write_json
from . import checkpoint, distributed
from .ema import EMA
from .loop import (DataOrder, TrainingState, check_run_length, clipped_step, dropout_seed, make_run_dir, open_log,
                   prepare_run_config, remove_stale_temp_files, set_lr, warmup_lr)

# options of a run beyond the config file's keys, with their defaults (kept in config["train"])
RUN_OPTIONS = {"precision": "fp32", "grad_accum": 1, "compile": False, "channels_last": False}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
LOG_HEADER = "step,loss,lr,grad_norm,seconds"
# keys that may differ between a run's config.json and the config it is resumed with
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "sample_every", "save_every", "keep", "num_samples",
                                         *RUN_OPTIONS)} | {"latent.scale_factor", "latent.shape", "latent.clip"}


def _with_defaults(config: dict) -> dict:
    """A config with the keys it lacks filled in from the section defaults and the model type's
    defaults, so a run saved before a key existed reads as having the key's default."""
    from ..config import SECTIONS
    from ..models import complete_config

    out = dict(config)
    for section, defaults in SECTIONS.items():
        if isinstance(config.get(section), dict):
            out[section] = {**copy.deepcopy(defaults), **config[section]}
    if isinstance(config.get("model"), dict):
        out["model"] = complete_config(config["model"])
    return out


def _prepare_config(out: Path, config: dict | None, resume: bool, seed: int | None) -> dict:
    """The config to train with (:func:`~difflab.training.loop.prepare_run_config` with the diffusion trainer's
    run-length keys; a saved config is completed with the defaults of keys added since it was written)."""
    return prepare_run_config(out, config, resume, seed, command="train", resumable=RESUMABLE_KEYS,
                              read=_with_defaults)


def split_run_options(raw: dict) -> tuple[dict, dict]:
    """A raw config (a file's mapping, such as a run's config.json) without the run options in its
    train section, and those options: so a config file may set them and a run's config.json can
    be given as a config again."""
    raw = copy.deepcopy(raw)
    tr = raw.get("train")
    options = {k: tr.pop(k) for k in RUN_OPTIONS if k in tr} if isinstance(tr, dict) else {}
    return raw, options


def _apply_options(tr: dict, options: dict) -> None:
    """Set the flags' values in the train section and check every option there."""
    for key, default in RUN_OPTIONS.items():
        tr.setdefault(key, default)
    tr.update({k: v for k, v in options.items() if v is not None})

    def positive_int(key, flag, minimum=1, what="a positive integer"):
        v = tr[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise DifflabError(f"{flag} must be {what}, got {v!r}.")

    positive_int("steps", "--steps")
    positive_int("log_every", "--log-every")
    positive_int("sample_every", "--sample-every", 0, "an integer >= 0 (0: only at the end)")
    positive_int("save_every", "--save-every", 0, "an integer >= 0 (0: only at the end)")
    positive_int("grad_accum", "--grad-accum")
    if tr["precision"] not in PRECISIONS:
        raise DifflabError(f"--precision must be one of {', '.join(PRECISIONS)}, got {tr['precision']!r}.")
    for key, flag in (("compile", "--compile"), ("channels_last", "--channels-last")):
        if not isinstance(tr[key], bool):
            raise DifflabError(f"{flag} must be true or false, got {tr[key]!r}.")


def train(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None, resume: bool = False,
          progress: bool = True, device: str | None = None, log=print, *, log_every: int | None = None,
          sample_every: int | None = None, save_every: int | None = None, max_minutes: float | None = None,
          precision: str | None = None, grad_accum: int | None = None, compile_model: bool | None = None,
          channels_last: bool | None = None) -> Path:
    """Train the model a resolved config describes, in run directory ``out``; return ``out``.

    With ``resume=True`` the run in ``out`` continues from its newest valid checkpoint (from step
    0 if it has none yet) with its own config.json; a ``config`` given then must match it apart
    from the run-length and logging keys. Keyword options override the train section and are
    recorded in config.json; ``max_minutes`` (not recorded) stops this session after that long,
    with a checkpoint to resume from. ``device`` None means cuda when available, else cpu. Under
    torchrun every process calls this; rank 0 alone writes and logs.
    """
    world = distributed.from_env()
    out = Path(out)
    config = _prepare_config(out, config, resume, seed)
    _apply_options(config["train"], {"steps": steps, "log_every": log_every, "sample_every": sample_every,
                                     "save_every": save_every, "precision": precision, "grad_accum": grad_accum,
                                     "compile": compile_model, "channels_last": channels_last})
    check_run_length(None, max_minutes)
    micro = distributed.check_split(config["train"]["batch_size"], world.world_size, config["train"]["grad_accum"])
    dev = distributed.pick_device(device, world)
    if not world.is_main:
        log = lambda *_: None  # noqa: E731
        progress = False
    world.start(dev)
    try:
        result = _train(config, out, resume, world, dev, micro, progress, log, max_minutes)
        world.barrier()  # every rank leaves together: the others wait for rank 0's last grid and checkpoint
        return result
    finally:
        world.stop()


def _train(config: dict, out: Path, resume: bool, world: distributed.World, dev: torch.device, micro: int,
           progress: bool, log, max_minutes: float | None) -> Path:
    from ..data import load_dataset
    from ..models import build_model
    from .. import timestep_sampling
    from ..objectives import l_simple, uniform_timesteps
    from ..random import randn
    from ..run import Normalization, build_denoiser
    from ..tasks.superres import condition as sr_condition
    from ..variational_bound import hybrid_losses

    tr, seed = config["train"], config["seed"]
    main = world.is_main
    d = config["data"]
    dataset = load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=d["num"], seed=seed)
    norm = Normalization.fit(dataset.kind, dataset.data) if "normalization" not in config \
        else Normalization.from_config(config["normalization"])
    config["normalization"] = norm.to_config()
    if "latent" in config:  # latent diffusion: the data become the autoencoder's scaled latents (difflab.latent)
        from ..latent import encode_dataset
        dataset, data = encode_dataset(config, dataset, norm, dev)
    else:
        data = norm.to_model(dataset.data).to(dev)
    _check_model_fits(config["model"], dataset)
    num_classes = config["model"].get("num_classes")
    labels = _check_labels(dataset, num_classes).to(dev) if num_classes else None
    null = num_classes
    if config["model"]["type"] == "text-unet":  # the captions' word ids; the null prompt is all padding (id 0)
        labels, null = _prompt_ids(config["model"], dataset).to(dev), 0

    torch.manual_seed(seed)  # the initial weights, alike on every rank
    model = build_model(config["model"]).to(dev)
    if tr["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, tr["ema_decay"]) if main else None
    opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    batch_size = tr["batch_size"]
    order = DataOrder(data.shape[0], batch_size, data_gen)
    training = TrainingState(model, ema, opt, data_gen, noise_gen, order)
    start, window = 0, [0.0, 0]  # window: sum and count of step losses not yet logged
    diff = config["diffusion"]
    objective, lam = diff.get("loss", "simple"), diff.get("vlb_weight", 0.001)
    sampler_name = tr.get("timestep_sampler", "uniform")
    # L_simple with uniform t keeps its own draw (uniform_timesteps, also for continuous schedules);
    # the IDDPM objectives and importance sampling draw t from a timestep sampler (IDDPM Sec. 3.3)
    t_sampler = None if objective == "simple" and sampler_name == "uniform" else timestep_sampling.get(sampler_name, diff["T"])
    gather = t_sampler is not None and type(t_sampler) is not timestep_sampling.UniformSampler

    if resume and checkpoint.list_checkpoints(out):
        with warnings.catch_warnings():
            if not main:
                warnings.simplefilter("ignore")
            ckpt = checkpoint.latest_valid(out)
        start, state, extra = training.restore(ckpt)
        window = list(state.get("log_window", [0.0, 0]))
        if t_sampler is not None:
            t_sampler.load_state_dict({k[len("sampler."):]: v for k, v in extra.items() if k.startswith("sampler.")})
        log(f"resuming {out} from step {start} ({ckpt.name})")
    elif resume:
        log(f"{out} holds no checkpoint yet; starting it from step 0")
    if start >= tr["steps"]:
        log(f"{out} has already been trained for {start} steps (target {tr['steps']}); nothing to do.")
        if main and start == tr["steps"] and not (out / "samples" / f"step_{start:08d}.png").exists():
            _finish(config, norm, build_denoiser(ema.model, config), out, start, dataset)  # killed after the last save
        return out
    world.barrier()  # every rank has read the checkpoint before rank 0 writes a new one

    schedule = build_denoiser(model, config).schedule
    param = config["diffusion"]["parameterization"]
    net = world.wrap(model, dev)
    if tr["compile"]:
        net = _compile(net)
    autocast = _autocast(tr["precision"], dev)
    to_memory = (lambda x: x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x) \
        if tr["channels_last"] else (lambda x: x)
    per_rank = batch_size // world.world_size
    accum = tr["grad_accum"]

    low_res_factor = config["data"].get("low_res_factor")

    def forward(x, t, y=None, cond=None):
        extra = {} if cond is None else {"cond": to_memory(cond)}  # SR3's conditioning image (data.low_res_factor)
        return net(to_memory(x), t, **extra) if y is None else net(to_memory(x), t, y, **extra)

    def train_step(step: int) -> tuple[float, float, float]:
        """One optimizer step on the global batch; returns (this rank's loss sum, grad norm, lr)."""
        lr = warmup_lr(tr["lr"], tr["warmup"], step)
        set_lr(lr, opt)
        torch.manual_seed(dropout_seed(seed, world.rank, step))
        idx = order.next().to(data.device)
        x0 = data[idx]
        if t_sampler is None:
            t, weights = uniform_timesteps(schedule, batch_size, noise_gen, dev), None  # drawn as l_simple draws them
        else:  # t ~ p_t with importance weights 1/(T p_t), all 1 for the uniform sampler
            t, weights = t_sampler.sample(batch_size, noise_gen, dev)
        eps = randn(x0.shape, noise_gen, dev, x0.dtype)
        y = None if labels is None else drop_labels(labels[idx], tr["label_dropout"], null, noise_gen)
        cond = None if not low_res_factor else sr_condition(x0, low_res_factor)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=dev)
        per_t = torch.zeros(batch_size, dtype=torch.float64) if gather else None  # unweighted, for the sampler
        lo = world.rank * per_rank
        for k in range(accum):
            s = slice(lo + k * micro, lo + (k + 1) * micro)
            sync = net.no_sync() if world.started and k < accum - 1 else contextlib.nullcontext()
            fwd = forward if cond is None else functools.partial(forward, cond=cond[s])
            with sync:
                with autocast:
                    if objective == "simple":
                        losses = l_simple(fwd, schedule, x0[s], param, t=t[s], eps=eps[s], y=None if y is None else y[s])
                    else:
                        losses = hybrid_losses(fwd, schedule, x0[s], t[s], noise=eps[s], lam=lam,
                                               y=None if y is None else y[s], objective=objective)["loss"]
                if per_t is not None:
                    per_t[s] = losses.detach().double().cpu()
                if weights is not None:
                    losses = losses * weights[s]
                (losses.sum() / per_rank).backward()
            total += losses.detach().sum()
        if per_t is not None:  # every rank records the global batch, so all keep the same sampler state
            t_sampler.update(t, world.sum(per_t.tolist(), dev) if world.started else per_t)
        grad_norm = clipped_step(model, opt, tr["grad_clip"])
        if main:
            ema.update(model)
        return float(total), grad_norm, lr

    def save(step: int) -> None:
        sampler_state = {} if t_sampler is None else {f"sampler.{k}": v for k, v in t_sampler.state_dict().items()}
        training.save(out, step, window, tr["keep"], tensors=sampler_state, state={"world_size": world.world_size})

    csv = bar = tb = None
    if main:
        make_run_dir(out)
        remove_stale_temp_files(out)
        write_json(out / "config.json", config)
        denoiser = build_denoiser(ema.model, config)
        csv = open_log(out / "log.csv", start, LOG_HEADER)
        tb = _tensorboard(out, start)
        if progress:
            from ..progress import progress_bar
            bar = progress_bar(total=tr["steps"], initial=start, desc=f"train {config['data']['name']}", unit="step")

    def sample_grid(step: int) -> None:
        _write_samples(config, norm, denoiser, out / "samples" / f"step_{step:08d}.png", tr["num_samples"], seed, dataset)

    max_seconds = None if max_minutes is None else 60.0 * max_minutes
    t0, step, stopped, last_mean = time.perf_counter(), start, False, float("nan")
    model.train()
    try:
        for step in range(start + 1, tr["steps"] + 1):
            if tr["compile"] and step == start + 1:
                try:
                    loss_sum, grad_norm, lr = train_step(step)
                except Exception as e:
                    if type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                        raise DifflabError(f"--compile: torch.compile could not build the model on this machine "
                                           f"({str(e).strip().splitlines()[0][:200]}); run without --compile.") from None
                    raise
            else:
                loss_sum, grad_norm, lr = train_step(step)
            time_up = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
            if world.started:  # the batch loss from every rank, and whether any rank ran out of time
                loss_sum, up = world.sum([loss_sum, float(time_up)], dev)
                time_up = up > 0
            window[0] += loss_sum / batch_size
            window[1] += 1
            stop = time_up and step < tr["steps"]
            if bar is not None:
                bar.update(1)
            if step % tr["log_every"] == 0 or step == tr["steps"]:
                last_mean = window[0] / window[1]
                window = [0.0, 0]
                if main:
                    seconds = time.perf_counter() - t0
                    csv.write(f"{step},{last_mean:.6g},{lr:.6g},{grad_norm:.6g},{seconds:.2f}\n")
                    csv.flush()
                    if tb is not None:
                        for name, value in (("loss", last_mean), ("lr", lr), ("grad_norm", grad_norm)):
                            tb.add_scalar(f"train/{name}", value, step)
                        tb.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{last_mean:.4f}", refresh=False)
            if main and tr["sample_every"] and step % tr["sample_every"] == 0 and step != tr["steps"]:
                sample_grid(step)
            if main and ((tr["save_every"] and step % tr["save_every"] == 0) or step == tr["steps"] or stop):
                save(step)
            if stop:
                stopped = True
                break
    finally:
        if csv is not None:
            csv.close()
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
    wall = time.perf_counter() - t0
    if not main:
        return out
    if stopped:
        _plot_loss(config, out)
    else:
        _finish(config, norm, denoiser, out, step, dataset)
    final = window[0] / window[1] if window[1] else last_mean
    done = step - start
    where = (f"stopped at the --max-minutes limit with a checkpoint at step {step}; continue with --resume"
             if stopped else "done")
    extras = (f", {world.world_size} processes" if world.distributed else "") + \
        (f", TensorBoard events in {out}" if tb is not None else "")
    log(f"trained {out}: step {step}/{tr['steps']} ({done} step{'s' * (done != 1)} in {wall:.1f}s, {done * batch_size / max(wall, 1e-9):.0f} "
        f"examples/s{extras}), final loss {final:.4g}; {where}")
    return out


LOSS_NAMES = {"simple": "L_simple", "hybrid": "L_hybrid", "vlb": "L_vlb"}


def _plot_loss(config: dict, out: Path) -> None:
    from .. import plotting
    name = LOSS_NAMES[config["diffusion"].get("loss", "simple")]
    plotting.plot_loss_curves_from_csv(out / "log.csv", out / "loss.png", title=f"{config['data']['name']}: {name}")


def _finish(config: dict, norm, denoiser, out: Path, step: int, dataset) -> None:
    """The last sample grid and the loss plot of a run that reached its target step."""
    _write_samples(config, norm, denoiser, out / "samples" / f"step_{step:08d}.png", config["train"]["num_samples"],
                   config["seed"], dataset)
    _plot_loss(config, out)


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


def _autocast(precision: str, device: torch.device):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    try:
        return torch.autocast(device_type=device.type, dtype=dtype)
    except RuntimeError as e:  # pragma: no cover - devices without bf16 autocast
        raise DifflabError(f"--precision {precision} is not supported on {device.type} ({e}).") from None


def _compile(net: torch.nn.Module) -> torch.nn.Module:
    try:
        return torch.compile(net)
    except Exception as e:
        raise DifflabError(f"--compile: torch.compile is not usable here ({str(e).strip().splitlines()[0][:200]}); "
                           "run without --compile.") from None


def _tensorboard(out: Path, start: int):
    """A TensorBoard writer into the run directory, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError, or a broken tensorboard install: the CSV log is enough
        return None
    return SummaryWriter(log_dir=str(out), purge_step=start + 1 if start else None)


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
    from ..run import build_denoiser, save_samples
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
        from ..tasks.superres import ConditionedNet, condition
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
