"""The training loop: L_simple with AdamW, warm-up, gradient clipping and EMA weights
(Ho et al. 2020, Algorithm 1 and Appx. B), logged to CSV, with sample grids and atomic checkpoints.

A run directory holds ``config.json`` (the resolved config, with the data normalisation),
``log.csv``, ``loss.png``, ``samples/step_<n>.png`` and the checkpoints ``ckpt-<n>/``. The
trainer state (optimizer moments, data order, every RNG state) is saved with the weights so a
run can continue with ``resume=True``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..errors import DifflabError
from ..io import write_json
from . import checkpoint
from .ema import EMA


class _DataOrder:
    """Shuffled minibatches, epoch after epoch, from its own generator; its state is saveable."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        idx = []
        need = self.batch_size
        while need > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += take.numel()
            need -= take.numel()
            idx.append(take)
        return torch.cat(idx)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value)
    return tensors, sd["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if not name.startswith("opt."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": groups}


def _prepare_run_dir(out: Path, config: dict, resume: bool) -> dict:
    """Check the run directory; on resume return the saved config, else write the new one."""
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise DifflabError(f"cannot resume: {str(out)!r} is not a run directory (no config.json).")
        return json.loads(cfg_path.read_text())
    if out.exists() and (cfg_path.exists() or checkpoint.list_checkpoints(out)):
        raise DifflabError(f"run directory {str(out)!r} already holds a run; pass --resume to continue it or choose another --out.")
    return config


def train(config: dict, out: str | Path, steps: int | None = None, seed: int | None = None, resume: bool = False,
          progress: bool = True, device: str = "cpu", log=print) -> Path:
    """Train the model a resolved config describes, in run directory ``out``; return ``out``."""
    from ..data import load_dataset
    from ..models import build_model
    from ..objectives import l_simple
    from ..run import Normalization, build_denoiser

    out = Path(out)
    config = _prepare_run_dir(out, config, resume)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise DifflabError(f"--steps must be a positive integer, got {steps!r}.")
        config["train"]["steps"] = steps
    if seed is not None and not resume:
        config["seed"] = seed
    tr, seed = config["train"], config["seed"]

    d = config["data"]
    dataset = load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=d["num"], seed=seed)
    norm = Normalization.fit(dataset.kind, dataset.data) if "normalization" not in config \
        else Normalization.from_config(config["normalization"])
    config["normalization"] = norm.to_config()
    _check_model_fits(config["model"], dataset)
    data = norm.to_model(dataset.data).to(device)

    torch.manual_seed(seed)  # dropout and anything else that uses the global generator
    model = build_model(config["model"]).to(device)
    ema = EMA(model, tr["ema_decay"])
    opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    order = _DataOrder(data.shape[0], tr["batch_size"], data_gen)
    start = 0

    if resume:
        ckpt = checkpoint.latest_valid(out)
        state = json.loads((ckpt / "state.json").read_text())
        model.load_state_dict(checkpoint.load_tensors(ckpt, "model"))
        ema.model.load_state_dict(checkpoint.load_tensors(ckpt, "ema"))
        extra = checkpoint.load_tensors(ckpt, "trainer")
        opt.load_state_dict(_unflatten_optimizer(extra, state["param_groups"]))
        torch.set_rng_state(extra["rng.global"])
        data_gen.set_state(extra["rng.data"])
        noise_gen.set_state(extra["rng.noise"])
        order.perm, order.pos = extra["data.perm"].long(), state["data_pos"]
        ema.updates = state["ema_updates"]
        start = state["step"]
        log(f"resuming {out} from step {start} ({ckpt.name})")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
    if start >= tr["steps"]:
        log(f"{out} has already been trained for {start} steps (target {tr['steps']}); nothing to do.")
        return out

    denoiser = build_denoiser(ema.model, config)
    csv_path = out / "log.csv"
    _truncate_log(csv_path, start)
    new_log = not csv_path.exists()
    csv = open(csv_path, "a")
    if new_log:
        csv.write("step,loss,lr,grad_norm,seconds\n")

    def save(step: int) -> None:
        opt_tensors, groups = _flatten_optimizer(opt)
        trainer_tensors = {**opt_tensors, "rng.global": torch.get_rng_state(), "rng.data": data_gen.get_state(),
                           "rng.noise": noise_gen.get_state(), "data.perm": order.perm}
        checkpoint.save(out, step, {"model": model.state_dict(), "ema": ema.model.state_dict(), "trainer": trainer_tensors},
                        {"param_groups": groups, "data_pos": order.pos, "ema_updates": ema.updates}, keep=tr["keep"])

    def sample_grid(step: int) -> None:
        _write_samples(config, norm, denoiser, out / "samples" / f"step_{step:08d}.png", tr["num_samples"], seed, dataset)

    bar = None
    if progress:
        from ..progress import progress_bar
        bar = progress_bar(total=tr["steps"], initial=start, desc=f"train {config['data']['name']}", unit="step")
    t0, running, count = time.perf_counter(), 0.0, 0
    model.train()
    try:
        for step in range(start + 1, tr["steps"] + 1):
            lr = tr["lr"] * min(1.0, step / tr["warmup"]) if tr["warmup"] > 0 else tr["lr"]
            for group in opt.param_groups:
                group["lr"] = lr
            batch = data[order.next().to(data.device)]
            loss = l_simple(model, denoiser.schedule, batch, config["diffusion"]["parameterization"], noise_gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = tr["grad_clip"] if tr["grad_clip"] > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            opt.step()
            ema.update(model)
            running += float(loss.detach())
            count += 1
            if bar is not None:
                bar.update(1)
            if step % tr["log_every"] == 0 or step == tr["steps"]:
                mean_loss = running / count
                csv.write(f"{step},{mean_loss:.6g},{lr:.6g},{grad_norm:.6g},{time.perf_counter() - t0:.2f}\n")
                csv.flush()
                running, count = 0.0, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            if tr["sample_every"] and step % tr["sample_every"] == 0 and step != tr["steps"]:
                sample_grid(step)
            if (tr["save_every"] and step % tr["save_every"] == 0) or step == tr["steps"]:
                save(step)
    finally:
        csv.close()
        if bar is not None:
            bar.close()
    sample_grid(tr["steps"])
    from .. import plotting
    plotting.plot_loss_curves_from_csv(csv_path, out / "loss.png", title=f"{config['data']['name']}: L_simple")
    log(f"trained {out} for {tr['steps']} steps in {time.perf_counter() - t0:.1f}s")
    return out


def _check_model_fits(model_cfg: dict, dataset) -> None:
    shape = dataset.shape
    if dataset.kind == "toy":
        if model_cfg["type"] != "mlp" or model_cfg.get("dim") != shape[0]:
            raise DifflabError(f"dataset {dataset.name!r} holds {shape[0]}-D points; the model must be an mlp with dim {shape[0]}.")
        return
    if model_cfg["type"] != "unet":
        raise DifflabError(f"dataset {dataset.name!r} holds images; the model must be a unet.")
    c, h, w = shape
    if model_cfg["in_channels"] != c or model_cfg["image_size"] != h or h != w:
        raise DifflabError(f"dataset {dataset.name!r} holds {c}x{h}x{w} images but the model expects "
                           f"{model_cfg['in_channels']}x{model_cfg['image_size']}x{model_cfg['image_size']}; "
                           "set model.in_channels and model.image_size to match.")


def _write_samples(config, norm, denoiser, path: Path, num: int, seed: int, dataset) -> None:
    """A fixed-noise grid (images) or scatter (toys) from the EMA model, to watch training."""
    from ..run import save_samples
    from ..samplers import sample

    sc = config["sample"]
    gen = torch.Generator().manual_seed(seed + 12345)
    opts = {"eta": sc["eta"]} if sc["sampler"] == "ddim" else {}
    device = next(denoiser.model.parameters()).device
    x = sample(denoiser, (num, *norm.shape), sampler=sc["sampler"], steps=sc["steps"], generator=gen, device=device, **opts)
    reference = dataset.data[:num] if dataset.kind == "toy" else None
    save_samples(norm.to_data(x).cpu(), path, norm.kind, reference=reference)


def _truncate_log(csv_path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint being resumed from."""
    if not csv_path.exists():
        return
    lines = csv_path.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln and int(ln.split(",")[0]) <= step]
    from ..io import write_text
    write_text(csv_path, "\n".join(kept) + "\n")
