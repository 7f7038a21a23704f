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

from pathlib import Path

import torch

from .. import regularizers
from ..checks import check_integer, check_number, fill_sections
from ..data import load_dataset
from ..checkpoint import read_record, with_record
from ..data.normalization import Normalization
from ..errors import DifflabError
from ..random import check_seed
from ..io import write_json
from ..saved import AUTOENCODER
from ..sections import AutoencoderDataSection, AutoencoderLossSection, AutoencoderTrainSection, defaults
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config
from .state import flatten_optimizer, unflatten_optimizer
from .trainable import Trainable
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "save_every", "keep")}

SECTIONS: dict[str, dict] = {"data": defaults(AutoencoderDataSection), "loss": defaults(AutoencoderLossSection),
                             "train": defaults(AutoencoderTrainSection)}

PRESETS: dict[str, dict] = {
    "mnist-pairs-kl": {"model": {"type": "kl"}},
    "mnist-pairs-vq": {"model": {"type": "vq"}},
}


def validate(config: dict) -> dict:
    """Fill the defaults of an autoencoder config and check every key; return the complete config."""
    from ..models.autoencoder import complete_autoencoder_config, latent_shape

    out = {"kind": AUTOENCODER, **fill_sections(config, SECTIONS, {"model", "seed", "preset", "normalization", "kind",
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
    check_seed(out["seed"], "seed", headroom=1)
    return out


def resolve(spec: str | dict) -> dict:
    """An autoencoder preset (``mnist-pairs-kl``, ``mnist-pairs-vq``), a config file, or a dict -> a
    complete config. A file may start from a preset (``preset: mnist-pairs-kl``)."""
    from ..config import resolve_spec

    return resolve_spec(spec, PRESETS, validate, "autoencoder")


def _check_run(saved: dict, out: Path) -> None:
    if saved.get("kind") != AUTOENCODER:
        raise DifflabError(f"{str(out)!r} is not an autoencoder run; resume it with the command that made it.")


class AutoencoderTrainable(Trainable):
    """The first stage of latent diffusion: L_rec + w_reg L_reg (+ w_adv L_adv) per example, with a patch
    discriminator trained alongside when ``loss.disc_weight`` > 0."""

    metrics = ("loss", "reconstruction", "regularizer")

    def __init__(self, config: dict, record: dict | None = None):
        self.config, self.record = config, dict(record or {})
        m, loss = config["model"], config["loss"]
        self.name = f"train-autoencoder {m['type']}"
        self.loss_title = f"{m['type']} autoencoder: loss per example"
        self.reg_weight = loss["kl_weight"] if m["type"] == "kl" else loss["commitment_weight"]
        self.disc = self.disc_opt = None

    def setup(self, device: torch.device) -> int:
        config = self.config
        d, m = config["data"], config["model"]
        dataset = load_dataset(d["name"], num=d["num"], seed=config["seed"])
        if dataset.kind != "image":
            raise DifflabError(f"dataset {d['name']!r} holds points; an autoencoder is for images.")
        if dataset.shape != (m["in_channels"], m["image_height"], m["image_width"]):
            raise DifflabError(f"dataset {d['name']!r} holds {'x'.join(map(str, dataset.shape))} images but the "
                               f"autoencoder expects {m['in_channels']}x{m['image_height']}x{m['image_width']}; set "
                               "model.in_channels, model.image_height and model.image_width to match.")
        norm = Normalization.fit("image", dataset.data)
        self.record["normalization"] = norm.to_config()
        self.run_config = with_record(config, self.record)
        self.data, self.device = norm.to_model(dataset.data).to(device), device
        return self.data.shape[0]

    def build(self) -> torch.nn.Module:
        from ..models.autoencoder import PatchDiscriminator, build_autoencoder

        m, tr = self.config["model"], self.config["train"]
        model = build_autoencoder(m)
        if self.config["loss"]["disc_weight"] > 0:
            self.disc = PatchDiscriminator(m["in_channels"]).to(self.device)
            self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=tr["lr"], betas=(0.5, 0.9))
        return model

    def optimizers(self, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
        tr = self.config["train"]
        opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"], betas=(0.5, 0.9))
        return [opt] if self.disc is None else [opt, self.disc_opt]

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        return {"x": self.data[idx], "generator": generator}

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        loss_cfg = self.config["loss"]
        x = batch["x"][part]
        x_rec, reg = net(x, batch["generator"])
        rec = regularizers.reconstruction_loss(x, x_rec, loss_cfg["reconstruction"])
        losses = rec + self.reg_weight * reg
        self._adversarial = self.disc is not None and self._step > loss_cfg["disc_start"]
        if self._adversarial:
            losses = losses + loss_cfg["disc_weight"] * regularizers.hinge_generator_loss(self.disc(x_rec))
            self._pair = (x, x_rec.detach())
        return losses, {"reconstruction": rec.detach(), "regularizer": reg.detach().expand_as(rec)}

    def after_step(self, step: int) -> None:
        if self._adversarial:  # the discriminator's hinge step on this batch (Rombach et al. 2022, Appx. G)
            x, x_rec = self._pair
            d_loss = regularizers.hinge_discriminator_loss(self.disc(x), self.disc(x_rec))
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
        self._step = step + 1

    def state(self) -> tuple[dict, dict]:
        if self.disc is None:
            return {}, {}
        dopt_tensors, groups = flatten_optimizer(self.disc_opt, prefix="dopt.")
        return {**{f"disc.{k}": v for k, v in self.disc.state_dict().items()}, **dopt_tensors}, {"disc_param_groups": groups}

    def load_state(self, tensors: dict, state: dict) -> None:
        self._step = state["step"] + 1
        if self.disc is not None:
            self.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
            self.disc_opt.load_state_dict(unflatten_optimizer(tensors, state["disc_param_groups"], prefix="dopt."))

    _step = 1
    _adversarial = False

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        evaluate(ema_model, self.run_config, out, step, log)

    def finished(self, out: Path, step: int) -> bool:
        return (out / "eval.json").exists()


def train_autoencoder(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None,
                      resume: bool = False, device: str | None = None, progress: bool = True,
                      max_minutes: float | None = None, log=print) -> Path:
    """Train (or, with ``resume``, continue) the autoencoder run ``out``; returns ``out``.
    ``max_minutes`` stops this session after that long, with a checkpoint to resume from."""
    out = Path(out)
    config = prepare_run_config(out, None if config is None else validate(config), resume, seed,
                                command="train-autoencoder", resumable=RESUMABLE_KEYS,
                                check_saved=lambda saved: _check_run(saved, out))
    check_run_length(steps, max_minutes)
    if steps is not None:
        config["train"]["steps"] = steps
    opts = LoopOptions.from_section(config["train"])
    return fit(AutoencoderTrainable(config, read_record(out) if resume else None), out, opts, config["seed"], resume=resume, device=device,
               progress=progress, max_minutes=max_minutes, log=log)


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """decode(encode(x)) of images ``x`` in [−1, 1], in batches, in eval mode."""
    model.eval()
    return torch.cat([model.decode(model.encode(x[lo:lo + batch_size])) for lo in range(0, x.shape[0], batch_size)])


def evaluate(model, config: dict, out: Path | None, step: int, log=print) -> dict:
    """Reconstruction PSNR (dB, images in [0, 1]) and ``FD[mnist-classifier]`` between the judge's features of
    the originals' and the reconstructions' 28 x 28 cells, on the first ``train.eval_num`` test canvases;
    writes ``eval.json`` and ``reconstructions.png`` (originals above their reconstructions) into ``out``."""
    from ..evaluate import JudgeFeatures, cells
    from ..metrics.frechet import frechet_distance_of

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
