"""Training the first stage of latent diffusion (Rombach et al. 2022, Sec. 3.1, Appx. G):
``difflab train-autoencoder CONFIG --out DIR``.

Per example, the loss is L_rec + w_reg L_reg (+ w_adv L_adv once ``loss.disc_start`` steps have passed):
L_rec = ‖x − x̂‖₁ (or ₂², ``loss.reconstruction``) summed over pixels; L_reg the KL of q(z|x) to
N(0, I) (``model.type: kl``, weight ``loss.kl_weight``) or the VQ commitment loss (``vq``, weight
``loss.commitment_weight``, the β of van den Oord et al. 2017; the codebook follows its EMA); L_adv the
hinge generator loss of a patch discriminator, trained alongside with the hinge discriminator loss
when ``loss.disc_weight`` > 0 (:mod:`difflab.regularizers`). Images are mapped to [−1, 1].

A run directory is like a diffusion run's: ``config.json`` (with ``"kind": "autoencoder"``, the data
``normalization`` and the latent shape), ``log.csv``, ``loss.png``, checkpoints ``ckpt-<n>/`` (the
trainer's atomic, checksummed safetensors; ``ema.safetensors`` holds the EMA weights used downstream;
``trainer.safetensors`` the optimizer, the discriminator and its optimizer, the data order and the
generators), so ``--resume`` continues exactly; and, at the end, ``eval.json`` and
``reconstructions.png``: reconstruction PSNR and ``FD[mnist-classifier]`` of the reconstructions (each
28 x 28 half of a canvas through the shipped MNIST judge) against the originals, on held-out images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import regularizers
from ..config import check_integer, check_number, fill_sections
from ..errors import DifflabError
from ..io import write_json
from . import checkpoint

KIND = "autoencoder"
LOG_HEADER = "step,loss,reconstruction,regularizer,lr,grad_norm,seconds"
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "save_every", "keep")}

SECTIONS: dict[str, dict] = {
    "data": {"name": "mnist-pairs", "num": None},
    "loss": {"reconstruction": "l1", "kl_weight": 1e-5, "commitment_weight": 0.25, "disc_weight": 0.0,
             "disc_start": 0},
    "train": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0, "warmup": 100, "grad_clip": 1.0,
              "ema_decay": 0.999, "log_every": 50, "save_every": 500, "keep": 2, "eval_num": 1000},
}

PRESETS: dict[str, dict] = {
    "mnist-pairs-kl": {"model": {"type": "kl"}},
    "mnist-pairs-vq": {"model": {"type": "vq"}},
}


def validate(config: dict) -> dict:
    """Fill the defaults of an autoencoder config and check every key; return the complete config."""
    from ..models.autoencoder import complete_autoencoder_config, latent_shape

    out = {"kind": KIND, **fill_sections(config, SECTIONS, {"model", "seed", "preset", "normalization", "kind",
                                                             "latent_shape"}, "autoencoder config")}
    out["model"] = complete_autoencoder_config(config.get("model", {}) or {})
    out["latent_shape"] = list(latent_shape(out["model"]))
    out["seed"] = config.get("seed", 0)
    if config.get("normalization") is not None:
        out["normalization"] = config["normalization"]
    loss, tr = out["loss"], out["train"]
    if loss["reconstruction"] not in ("l1", "l2"):
        raise DifflabError(f"loss.reconstruction must be 'l1' or 'l2', got {loss['reconstruction']!r}.")
    for key in ("kl_weight", "commitment_weight", "disc_weight"):
        check_number(loss[key], f"loss.{key}")
    for key in ("steps", "batch_size", "log_every", "keep", "eval_num"):
        check_integer(tr[key], f"train.{key}")
    check_integer(tr["warmup"], "train.warmup", 0)
    check_integer(tr["save_every"], "train.save_every", 0)
    check_integer(loss["disc_start"], "loss.disc_start", 0)
    check_number(tr["lr"], "train.lr", positive=True)
    check_number(tr["ema_decay"], "train.ema_decay", high=1)
    check_integer(out["seed"], "seed", 0)
    return out


def resolve(spec: str | dict) -> dict:
    """An autoencoder preset (``mnist-pairs-kl``, ``mnist-pairs-vq``), a config file, or a dict -> a
    complete config. A file may start from a preset (``preset: mnist-pairs-kl``)."""
    from ..config import resolve_spec

    return resolve_spec(spec, PRESETS, validate, "autoencoder")


def _check_run(saved: dict, out: Path) -> None:
    if saved.get("kind") != KIND:
        raise DifflabError(f"{str(out)!r} is not an autoencoder run; resume it with the command that made it.")


def train_autoencoder(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None,
                      resume: bool = False, device: str | None = None, progress: bool = True,
                      max_minutes: float | None = None, log=print) -> Path:
    """Train (or, with ``resume``, continue) the autoencoder run ``out``; returns ``out``.
    ``max_minutes`` stops this session after that long, with a checkpoint to resume from."""
    from ..data import load_dataset
    from ..models.autoencoder import PatchDiscriminator, build_autoencoder
    from ..run import Normalization
    from .distributed import World, pick_device
    from .ema import EMA
    from .loop import (DataOrder, TrainingState, check_run_length, clipped_step, flatten_optimizer, make_run_dir,
                       open_log, prepare_run_config, remove_stale_temp_files, set_lr, unflatten_optimizer, warmup_lr)

    out = Path(out)
    config = prepare_run_config(out, None if config is None else validate(config), resume, seed,
                                command="train-autoencoder", resumable=RESUMABLE_KEYS,
                                check_saved=lambda saved: _check_run(saved, out))
    tr, loss_cfg = config["train"], config["loss"]
    check_run_length(steps, max_minutes)
    if steps is not None:
        tr["steps"] = steps
    dev = pick_device(device, World())
    seed = config["seed"]
    d = config["data"]
    dataset = load_dataset(d["name"], num=d["num"], seed=seed)
    if dataset.kind != "image":
        raise DifflabError(f"dataset {d['name']!r} holds points; an autoencoder is for images.")
    m = config["model"]
    if dataset.shape != (m["in_channels"], m["image_height"], m["image_width"]):
        raise DifflabError(f"dataset {d['name']!r} holds {'x'.join(map(str, dataset.shape))} images but the autoencoder "
                           f"expects {m['in_channels']}x{m['image_height']}x{m['image_width']}; set model.in_channels, "
                           "model.image_height and model.image_width to match.")
    norm = Normalization.fit("image", dataset.data)
    config["normalization"] = norm.to_config()
    data = norm.to_model(dataset.data).to(dev)

    torch.manual_seed(seed)
    model = build_autoencoder(m).to(dev)
    ema = EMA(model, tr["ema_decay"])
    opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"], betas=(0.5, 0.9))
    use_disc = loss_cfg["disc_weight"] > 0
    disc = PatchDiscriminator(m["in_channels"]).to(dev) if use_disc else None
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=tr["lr"], betas=(0.5, 0.9)) if use_disc else None
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    order = DataOrder(data.shape[0], tr["batch_size"], data_gen)
    training = TrainingState(model, ema, opt, data_gen, noise_gen, order)
    start, window = 0, [0.0, 0.0, 0.0, 0]  # loss, reconstruction and regulariser sums, steps not yet logged

    if resume and checkpoint.list_checkpoints(out):
        ckpt = checkpoint.latest_valid(out)
        start, state, extra = training.restore(ckpt)
        if use_disc:
            disc.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("disc.")})
            disc_opt.load_state_dict(unflatten_optimizer(extra, state["disc_param_groups"], prefix="dopt."))
        window = list(state["log_window"])
        log(f"resuming {out} from step {start} ({ckpt.name})")
    if start >= tr["steps"]:
        log(f"{out} has already been trained for {start} steps (target {tr['steps']}); nothing to do.")
        if start == tr["steps"] and not (out / "eval.json").exists():
            evaluate(ema.model, config, out, start, log)
        return out

    def save(step: int) -> None:
        tensors, state = {}, {}
        if use_disc:
            dopt_tensors, state["disc_param_groups"] = flatten_optimizer(disc_opt, prefix="dopt.")
            tensors = {**{f"disc.{k}": v for k, v in disc.state_dict().items()}, **dopt_tensors}
        training.save(out, step, window, tr["keep"], tensors=tensors, state=state)

    make_run_dir(out)
    remove_stale_temp_files(out)
    write_json(out / "config.json", config)
    csv_path = out / "log.csv"
    bar = None
    if progress:
        from ..progress import progress_bar
        bar = progress_bar(total=tr["steps"], initial=start, desc=f"train-autoencoder {m['type']}", unit="step")
    reg_weight = loss_cfg["kl_weight"] if m["type"] == "kl" else loss_cfg["commitment_weight"]
    t0, step, stopped = time.perf_counter(), start, False
    model.train()
    try:
        with open_log(csv_path, start, LOG_HEADER) as csv:
            for step in range(start + 1, tr["steps"] + 1):
                lr = warmup_lr(tr["lr"], tr["warmup"], step)
                set_lr(lr, *((opt, disc_opt) if use_disc else (opt,)))
                x = data[order.next().to(dev)]
                x_rec, reg = model(x, noise_gen)
                rec = regularizers.reconstruction_loss(x, x_rec, loss_cfg["reconstruction"])
                loss = (rec + reg_weight * reg).mean()
                adversarial = use_disc and step > loss_cfg["disc_start"]
                if adversarial:
                    loss = loss + loss_cfg["disc_weight"] * regularizers.hinge_generator_loss(disc(x_rec))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = clipped_step(model, opt, tr["grad_clip"])
                ema.update(model)
                if adversarial:
                    d_loss = regularizers.hinge_discriminator_loss(disc(x), disc(x_rec.detach()))
                    disc_opt.zero_grad(set_to_none=True)
                    d_loss.backward()
                    disc_opt.step()
                window = [window[0] + float(loss.detach()), window[1] + float(rec.detach().mean()),
                          window[2] + float(reg.detach().mean()), window[3] + 1]
                if bar is not None:
                    bar.update(1)
                if step % tr["log_every"] == 0 or step == tr["steps"]:
                    k = window[3]
                    csv.write(f"{step},{window[0] / k:.6g},{window[1] / k:.6g},{window[2] / k:.6g},{lr:.6g},"
                              f"{grad_norm:.6g},{time.perf_counter() - t0:.2f}\n")
                    csv.flush()
                    if bar is not None:
                        bar.set_postfix(rec=f"{window[1] / k:.2f}", refresh=False)
                    window = [0.0, 0.0, 0.0, 0]
                time_up = max_minutes is not None and time.perf_counter() - t0 >= 60 * max_minutes and step < tr["steps"]
                if (tr["save_every"] and step % tr["save_every"] == 0) or step == tr["steps"] or time_up:
                    save(step)
                if time_up:
                    stopped = True
                    break
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    from .. import plotting
    plotting.plot_loss_curves_from_csv(csv_path, out / "loss.png", title=f"{m['type']} autoencoder: loss per example")
    if stopped:
        log(f"stopped {out} at the --max-minutes limit with a checkpoint at step {step} ({step - start} steps in "
            f"{wall:.1f}s); continue with --resume")
        return out
    log(f"trained {out}: step {step}/{tr['steps']} ({step - start} steps in {wall:.1f}s)")
    evaluate(ema.model, config, out, step, log)
    return out


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """decode(encode(x)) of images ``x`` in [−1, 1], in batches, in eval mode."""
    model.eval()
    return torch.cat([model.decode(model.encode(x[lo:lo + batch_size])) for lo in range(0, x.shape[0], batch_size)])


def evaluate(model, config: dict, out: Path | None, step: int, log=print) -> dict:
    """Reconstruction PSNR (dB, images in [0, 1]) and ``FD[mnist-classifier]`` between the judge's features of
    the originals' and the reconstructions' 28 x 28 cells, on the first ``train.eval_num`` test canvases;
    writes ``eval.json`` and ``reconstructions.png`` (originals above their reconstructions) into ``out``."""
    from ..data import load_dataset
    from ..evaluate import JudgeFeatures, cells
    from ..metrics.frechet import frechet_distance_of
    from ..run import Normalization

    norm = Normalization.from_config(config["normalization"])
    test = load_dataset(config["data"]["name"], num=config["train"]["eval_num"], split="test", seed=config["seed"])
    dev = next(model.parameters()).device
    x = test.data
    rec = norm.to_data(reconstruct(model, norm.to_model(x).to(dev)).cpu())
    psnr = regularizers.psnr(x, rec)
    judge = JudgeFeatures("mnist")
    fd = frechet_distance_of(judge(cells(x))[0], judge(cells(rec))[0])
    result = {"step": step, "weights": "ema", "num": int(x.shape[0]), "held_out": f"the first {x.shape[0]} test canvases",
              "psnr_db": float(psnr.mean()), "psnr_db_std": float(psnr.std()), f"FD[{judge.name}]": float(fd),
              "fd_between": "the judge's features of the originals' and the reconstructions' 28x28 halves"}
    if out is not None:
        from ..plotting import save_image_grid
        write_json(out / "eval.json", result)
        k = 8
        save_image_grid(torch.cat([x[:k], rec[:k], x[k:2 * k], rec[k:2 * k]]), out / "reconstructions.png", nrow=k)
    log(f"held-out reconstruction: PSNR {result['psnr_db']:.2f} dB, FD[{judge.name}] {float(fd):.3f} "
        f"({x.shape[0]} canvases)")
    return result


@dataclass
class AutoencoderRun:
    """A trained autoencoder with its config (data normalisation, latent shape)."""

    path: Path
    config: dict
    model: torch.nn.Module
    step: int

    @property
    def latent_shape(self) -> tuple:
        return tuple(self.config["latent_shape"])

    @property
    def image_shape(self) -> tuple:
        m = self.config["model"]
        return (m["in_channels"], m["image_height"], m["image_width"])


def load_autoencoder(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> AutoencoderRun:
    """The newest valid checkpoint of an autoencoder run, in eval mode, gradients off."""
    from ..models.autoencoder import build_autoencoder

    path = Path(path)
    if not path.is_dir():
        raise DifflabError(f"autoencoder run {str(path)!r} does not exist.")
    config = checkpoint.read_config(path, "an autoencoder run")
    if config.get("kind") != KIND:
        raise DifflabError(f"{str(path)!r} is not an autoencoder run (made by difflab train-autoencoder).")
    model = build_autoencoder(config["model"])
    step = checkpoint.load_latest(model, path, weights, "autoencoder")
    return AutoencoderRun(path, config, model.to(device).eval().requires_grad_(False), step)
