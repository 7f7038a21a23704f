"""Training an energy-based model in the one loop: contrastive divergence with short-run or persistent MCMC chains
(:mod:`difflab.ebm.contrastive`), or a score-matching estimator (:mod:`difflab.ebm.score_matching`), on an energy
MLP, an energy conv net or a binary RBM (:mod:`difflab.ebm.networks`).

``ebm.objective``: ``cd`` (contrastive divergence: Langevin chains on an energy network, block Gibbs sweeps on an
RBM, from a replay buffer of ``ebm.buffer`` persistent chains or, with buffer 0, from ``ebm.init``: noise, or the
training examples themselves for CD-k), ``exact`` (Hyvärinen
2005), ``sliced`` or ``sliced-vr`` (Song et al. 2019), ``denoising`` (Vincent 2011). Every random draw of a step
(chain starts, the chains' noise, buffer picks, projections) is made for the global batch in :meth:`draw`, so a
killed run resumes bit for bit; the buffer is checkpointed with the weights.

Logged per step (Nijkamp et al. 2020's diagnostics): the mean energy of the data and of the negative samples. A
run whose two energies track each other learns a density whose samples its chains can reach ("convergent"); a gap
that keeps growing means the chains no longer reach the model's own low-energy regions. One process; no torchrun
(the persistent chains live in one process).

A run directory is like a diffusion run's, with ``"kind": "ebm"`` in config.json; ``difflab sample`` draws from it
with ``--sampler metropolis | langevin | mala | hmc`` (``gibbs`` for an RBM).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..checkpoint import read_record, with_record
from ..checks import check_integer, check_number, fill_sections
from ..data import load_dataset
from ..data.normalization import Normalization
from ..ebm import mcmc
from ..ebm.contrastive import ReplayBuffer, contrastive_divergence_loss, short_run_langevin
from ..ebm.networks import build, complete_config
from ..ebm.run import EBM, EnergyRun, init_range
from ..ebm.score_matching import (denoising_score_matching, energy_score, exact_score_matching,
                                  sliced_score_matching)
from ..errors import DifflabError
from ..random import check_seed, randn
from ..sections import EBMDataSection, EBMSampleSection, EBMSection, EBMTrainSection, defaults
from .distributed import from_env
from .loop import LoopOptions, check_run_length, fit
from .run_config import prepare_run_config
from .trainable import Trainable

OBJECTIVES = ("cd", "exact", "sliced", "sliced-vr", "denoising")
SECTIONS: dict[str, dict] = {"data": defaults(EBMDataSection), "ebm": defaults(EBMSection),
                             "train": defaults(EBMTrainSection), "sample": defaults(EBMSampleSection)}
RESUMABLE_KEYS = {f"train.{k}" for k in ("steps", "log_every", "save_every", "keep", "sample_every", "num_samples")}
#: exact score matching costs one backward pass per dimension
EXACT_MAX_DIM = 64

PRESETS: dict[str, dict] = {
    # standardised 8 Gaussians: modes of std 0.07 at radius 1.4, so Langevin steps of τ = 5e-4 (noise 0.03); α = 0.1
    # holds the energies so close together that 15% of long-run samples sit between or beyond the modes, α = 0.01 none
    "8gaussians-ebm": {
        "data": {"name": "8gaussians"},
        "model": {"type": "energy-mlp", "dim": 2, "hidden": 128, "depth": 3},
        "ebm": {"objective": "cd", "chain_steps": 30, "step_size": 5e-4, "buffer": 10000, "reinit": 0.05,
                "alpha": 0.01},
        "train": {"steps": 3000, "batch_size": 256, "lr": 1e-3, "warmup": 100, "log_every": 100,
                  "save_every": 1000},
        "sample": {"sampler": "mala", "steps": 500, "step_size": 5e-3},
    },
    # sklearn's 8x8 digits in [−1, 1]: short-run chains with a small noise, as Du & Mordatch 2019 and Nijkamp et al.
    # 2020 use for images
    "digits-ebm": {
        "data": {"name": "digits"},
        "model": {"type": "energy-conv", "in_channels": 1, "image_size": 8, "channels": 32, "depth": 3},
        "ebm": {"objective": "cd", "chain_steps": 40, "step_size": 0.05, "noise_scale": 0.02, "buffer": 5000,
                "reinit": 0.05, "alpha": 0.1},
        "train": {"steps": 3000, "batch_size": 128, "lr": 3e-4, "warmup": 100, "log_every": 100,
                  "save_every": 1000, "num_samples": 64},
        # sampled by the training chain itself from noise (Langevin's own noise √(2τ) = 0.3 per step blurs the digits
        # away): 1,000 steps give recognisable digits, 40 (the training chains' length) only blobs
        "sample": {"sampler": "short-run", "steps": 1000, "step_size": 0.05},
    },
    # a binary RBM on MNIST pixels > 0.5, persistent CD with one Gibbs sweep per step (Tieleman 2008)
    "mnist-rbm": {
        "data": {"name": "mnist", "binarize": True},
        "model": {"type": "rbm", "visible": 784, "hidden": 128},
        "ebm": {"objective": "cd", "chain_steps": 1, "buffer": 1000, "reinit": 0.0, "alpha": 0.0},
        "train": {"steps": 6000, "batch_size": 100, "lr": 1e-3, "warmup": 0, "grad_clip": 0.0, "ema_decay": 0.0,
                  "log_every": 100, "save_every": 2000, "num_samples": 64, "eval_num": 1000},
        "sample": {"sampler": "gibbs", "steps": 1000},
    },
}
PRESETS["digits-rbm"] = copy.deepcopy(PRESETS["mnist-rbm"])
PRESETS["digits-rbm"]["data"] = {"name": "digits", "binarize": True}
PRESETS["digits-rbm"]["model"] = {"type": "rbm", "visible": 64, "hidden": 32}
PRESETS["digits-rbm"]["train"].update(steps=1500, lr=1e-2, eval_num=297)  # lr 1e-3: −22.3 nats, 1e-2: −17.4


def validate(config: dict) -> dict:
    """Fill the defaults of an energy-based config and check every key; returns the complete config."""
    out = {"kind": EBM, **fill_sections(config, SECTIONS, {"model", "seed", "preset", "normalization", "kind",
                                                             "init_range"}, "energy-based config")}
    out["model"] = complete_config(config.get("model", {}) or {})
    build(out["model"])  # raises on a bad value
    out["seed"] = check_seed(config.get("seed", 0), "seed", headroom=1)
    for key in ("normalization", "init_range"):
        if config.get(key) is not None:
            out[key] = config[key]
    if out["data"]["name"] is None:
        raise DifflabError("the energy-based config needs 'data.name' (a dataset such as 8gaussians or digits).")
    e, tr, sc, m = out["ebm"], out["train"], out["sample"], out["model"]
    if e["objective"] not in OBJECTIVES:
        raise DifflabError(f"ebm.objective must be one of {', '.join(OBJECTIVES)}, got {e['objective']!r}.")
    if m["type"] == "rbm" and e["objective"] != "cd":
        raise DifflabError(f"an RBM learns by contrastive divergence (ebm.objective: cd), got {e['objective']!r}: its "
                           "units are binary, so it has no score to match.")
    if (m["type"] == "rbm") != bool(out["data"]["binarize"]):
        raise DifflabError("an RBM takes binary pixels and only an RBM does: set data.binarize to true with model type "
                           "rbm and leave it false otherwise.")
    conditional = m["type"] == "energy-mlp" and m["noise_conditional"]
    if conditional and (e["objective"] != "denoising" or e["sigma_max"] is None):
        raise DifflabError("a noise-conditional energy (model.noise_conditional) learns by denoising score matching over "
                           "a range of noise levels: set ebm.objective: denoising and ebm.sigma_max.")
    if e["sigma_max"] is not None and not conditional:
        raise DifflabError("ebm.sigma_max (a range of noise levels) needs a noise-conditional energy: set "
                           "model.noise_conditional: true (an energy-mlp).")
    if conditional:
        check_number(e["sigma_max"], "ebm.sigma_max", positive=True)
        if e["sigma_max"] <= e["sigma"]:
            raise DifflabError(f"ebm.sigma_max ({e['sigma_max']}) must exceed ebm.sigma ({e['sigma']}), the smallest level.")
    for key in ("chain_steps", "projections"):
        check_integer(e[key], f"ebm.{key}")
    check_integer(e["buffer"], "ebm.buffer", 0)
    if e["init"] not in ("noise", "data"):
        raise DifflabError(f"ebm.init (where fresh chains start) must be noise or data, got {e['init']!r}.")
    for key in ("step_size", "sigma"):
        check_number(e[key], f"ebm.{key}", positive=True)
    if e["noise_scale"] is not None:
        check_number(e["noise_scale"], "ebm.noise_scale")
    check_number(e["alpha"], "ebm.alpha")
    check_number(e["reinit"], "ebm.reinit", high=1)
    LoopOptions.from_section(tr)  # the keys the loop reads, checked where the loop checks them
    for key in ("num_samples", "eval_num"):
        check_integer(tr[key], f"train.{key}")
    check_number(tr["weight_decay"], "train.weight_decay")
    allowed = ["gibbs"] if m["type"] == "rbm" else \
        list(mcmc.SAMPLERS) + ["short-run"] + (["annealed-langevin"] if conditional else [])
    if sc["sampler"] not in allowed:
        raise DifflabError(f"sample.sampler must be one of {', '.join(allowed)} for model type {m['type']!r}, "
                           f"got {sc['sampler']!r}.")
    check_integer(sc["steps"], "sample.steps")
    mcmc.check_step(f"sample.{sc['sampler']}", sc["step_size"])
    return out


def resolve(spec: str | dict) -> dict:
    """An energy-based preset (``8gaussians-ebm``, ``digits-ebm``, ``digits-rbm``, ``mnist-rbm``), a config file
    that may start from one (``preset: digits-ebm``), or a dict -> a complete config."""
    from ..config import resolve_spec

    return resolve_spec(spec, PRESETS, validate, "energy-based")


def is_ebm_spec(spec) -> bool:
    """Whether ``difflab train`` should train ``spec`` (a preset name or config file) as an energy-based model."""
    if isinstance(spec, dict):
        return spec.get("kind") == EBM or spec.get("preset") in PRESETS
    if spec in PRESETS:
        return True
    if Path(str(spec)).suffix in (".yaml", ".yml", ".toml", ".json") and Path(spec).is_file():
        from ..config import load_file

        data = load_file(spec)
        return data.get("kind") == EBM or data.get("preset") in PRESETS
    return False


class EBMTrainable(Trainable):
    """An energy model on its data; per-example loss of the config's objective."""

    metrics = ("loss", "energy_data", "energy_model")

    def __init__(self, config: dict, record: dict | None = None):
        self.config, self.record = config, dict(record or {})
        self.objective = config["ebm"]["objective"]
        self.rbm = config["model"]["type"] == "rbm"
        self.name = f"train {config['data']['name']} ({config['model']['type']}, {self.objective})"
        self.loss_title = f"{config['data']['name']}: {'contrastive divergence' if self.objective == 'cd' else self.objective + ' score matching'}"

    def dataset(self):
        """The training data (a :class:`~difflab.data.Dataset`): the config's data section, loaded."""
        config, d = self.config, self.config["data"]
        return load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"],
                            num=d["num"], seed=config["seed"])

    def setup(self, device: torch.device) -> int:
        config, d = self.config, self.config["data"]
        dataset = self.dataset()
        m = config["model"]
        if dataset.kind == "toy" and (m["type"] != "energy-mlp" or m["dim"] != dataset.shape[0]):
            raise DifflabError(f"dataset {d['name']!r} holds {dataset.shape[0]}-D points; the model must be an "
                               f"energy-mlp with dim {dataset.shape[0]}.")
        if dataset.kind == "image" and m["type"] == "energy-mlp":
            raise DifflabError(f"dataset {d['name']!r} holds images; use model type energy-conv or rbm.")
        if m["type"] == "energy-conv" and dataset.shape != (m["in_channels"], m["image_size"], m["image_size"]):
            raise DifflabError(f"dataset {d['name']!r} holds {'x'.join(map(str, dataset.shape))} images but the energy "
                               f"expects {m['in_channels']}x{m['image_size']}x{m['image_size']}.")
        if m["type"] == "rbm" and m["visible"] != dataset.data[0].numel():
            raise DifflabError(f"dataset {d['name']!r} has {dataset.data[0].numel()} pixels but the RBM has "
                               f"model.visible = {m['visible']}.")
        if self.objective == "exact" and dataset.data[0].numel() > EXACT_MAX_DIM:
            raise DifflabError(f"exact score matching costs one backward pass per dimension; dataset {d['name']!r} has "
                               f"{dataset.data[0].numel()} (at most {EXACT_MAX_DIM}): use sliced or denoising.")
        if self.rbm:
            norm = Normalization("image", tuple(dataset.shape), [0.0], 1.0)
            data = (dataset.data > 0.5).to(torch.float32)
        else:
            norm = Normalization.fit(dataset.kind, dataset.data)
            data = norm.to_model(dataset.data)
        self.record["normalization"] = norm.to_config()
        if dataset.kind == "toy":
            self.record["init_range"] = [float(data.min()) - 0.5, float(data.max()) + 0.5]
        self.run_config = with_record(config, self.record)
        self.data, self.device, self.kind = data.to(device), device, dataset.kind
        self.shape = tuple(data.shape[1:])
        size = config["ebm"]["buffer"]
        gen = torch.Generator().manual_seed(config["seed"] + 7)
        self.buffer = ReplayBuffer(self._noise_states(size, gen), config["ebm"]["reinit"]) if size else None
        return data.shape[0]

    def _noise_states(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = init_range(self.run_config)
        x = lo + (hi - lo) * torch.rand((n, *self.shape), generator=generator)
        return torch.bernoulli(x, generator=generator) if self.rbm else x

    def build(self) -> torch.nn.Module:
        return build(self.config["model"])

    def draw(self, idx: torch.Tensor, generator: torch.Generator) -> dict:
        e, n = self.config["ebm"], idx.shape[0]
        batch = {"x": self.data[idx]}
        if self.objective == "cd":
            fresh = self._noise_states(n, generator)
            if self.buffer is not None:
                batch["slots"], start = self.buffer.starts(fresh, generator)
            else:  # CD-k starts each chain at its training example (Hinton 2002), short-run CD from noise
                start = batch["x"].cpu() if e["init"] == "data" else fresh
            batch["start"], batch["ends"] = start.to(self.device), torch.empty_like(start, device=self.device)
            k = e["chain_steps"]
            if self.rbm:
                hidden = self.config["model"]["hidden"]
                batch["uniforms"] = (torch.rand((k, n, hidden), generator=generator).to(self.device),
                                     torch.rand((k, n, *self.shape), generator=generator).flatten(2).to(self.device))
            else:
                batch["noise"] = randn((k, n, *self.shape), generator, self.device)
        elif self.objective == "denoising":
            batch["noise"] = randn((n, *self.shape), generator, self.device)
            if e["sigma_max"] is not None:  # σ log-uniform over the levels (Song & Ermon 2019, Sec. 4.2)
                u = torch.rand(n, generator=generator, dtype=torch.float64)
                batch["sigma"] = (e["sigma"] * (e["sigma_max"] / e["sigma"]) ** u).to(self.device, torch.float32)
        elif self.objective.startswith("sliced"):
            batch["directions"] = randn((e["projections"], n, *self.shape), generator, self.device)
        return batch

    def loss(self, net, batch: dict, part: slice) -> tuple[torch.Tensor, dict]:
        e, x = self.config["ebm"], batch["x"][part]
        if self.objective == "cd":
            if self.rbm:
                rbm = getattr(net, "_orig_mod", net)  # the RBM itself under torch.compile
                ends = rbm.gibbs(batch["start"][part], e["chain_steps"],
                                 uniforms=(batch["uniforms"][0][:, part], batch["uniforms"][1][:, part]))
            else:
                clamp = (-1.0, 1.0) if self.kind == "image" else None
                ends = short_run_langevin(net, batch["start"][part], batch["noise"][:, part], e["step_size"],
                                          e["noise_scale"], clamp)
            batch["ends"][part] = ends.reshape(batch["ends"][part].shape)
            e_data, e_model = net(x), net(ends)
            return contrastive_divergence_loss(e_data, e_model, e["alpha"]), \
                {"energy_data": e_data.detach(), "energy_model": e_model.detach()}
        score = energy_score(net)
        if self.objective == "exact":
            losses = exact_score_matching(score, x)
        elif self.objective == "denoising" and "sigma" in batch:  # λ(σ) = σ² (Song & Ermon 2019, Eq. 6)
            sigma = batch["sigma"][part]
            score = energy_score(lambda v: net(v, sigma))
            losses = sigma**2 * denoising_score_matching(score, x, sigma, noise=batch["noise"][part])
            x = (x, sigma)
        elif self.objective == "denoising":
            losses = denoising_score_matching(score, x, e["sigma"], noise=batch["noise"][part])
        else:
            losses = sliced_score_matching(score, x, directions=batch["directions"][:, part],
                                           variance_reduced=self.objective == "sliced-vr")
        e_data = (net(*x) if isinstance(x, tuple) else net(x)).detach()
        return losses, {"energy_data": e_data, "energy_model": torch.full_like(e_data, float("nan"))}

    def after_backward(self, batch: dict, world, device: torch.device) -> None:
        if self.buffer is not None and "slots" in batch:
            self.buffer.store(batch["slots"], batch["ends"].cpu())

    def state(self) -> tuple[dict, dict]:
        return ({} if self.buffer is None else {"buffer.states": self.buffer.states}), {}

    def load_state(self, tensors: dict, state: dict) -> None:
        if self.buffer is not None and "buffer.states" in tensors:
            self.buffer.states = tensors["buffer.states"].clone()

    def sample_grid(self, ema_model: torch.nn.Module, out: Path, step: int) -> None:
        from ..plotting import save_samples

        run = EnergyRun(self.run_config, ema_model, out)
        x = run.sample(self.config["train"]["num_samples"], generator=torch.Generator().manual_seed(self.config["seed"]))
        reference = self.norm_data()[:2000] if self.kind == "toy" else None
        save_samples(x.cpu(), _grid_path(out, step), run.kind, reference=reference)

    def norm_data(self) -> torch.Tensor:
        return Normalization.from_config(self.record["normalization"]).to_data(self.data.cpu())

    def finish(self, ema_model: torch.nn.Module, out: Path, step: int, log) -> None:
        self.sample_grid(ema_model, out, step)
        if self.rbm:
            evaluate_rbm(ema_model, self.run_config, out, step, log)

    def finished(self, out: Path, step: int) -> bool:
        return _grid_path(out, step).exists() and (not self.rbm or (out / "eval.json").exists())


def _grid_path(out: Path, step: int) -> Path:
    return out / "samples" / f"step_{step:08d}.png"


def evaluate_rbm(rbm, config: dict, out: Path | None, step: int, log=print) -> dict:
    """The RBM's log-likelihood (nats per image) on ``train.eval_num`` held-out binarised images (the test split;
    digits has none, so its first images), log Z by annealed importance sampling with the data's base rates as the
    base model (Salakhutdinov & Murray 2008): writes ``eval.json``."""
    from ..ebm.rbm import ais_log_partition, data_log_odds, log_likelihood
    from ..io import write_json

    d = config["data"]
    test = load_dataset(d["name"], root=d["root"], num=config["train"]["eval_num"], split="test", seed=config["seed"])
    train = load_dataset(d["name"], root=d["root"], num=min(10000, config["train"]["eval_num"] * 10), seed=config["seed"])
    v = (test.data > 0.5).double().flatten(1)
    rbm = copy.deepcopy(rbm).double().cpu()
    log_z, se = ais_log_partition(rbm, chains=100, betas=2000, base_bias=data_log_odds(train.data > 0.5),
                                  generator=torch.Generator().manual_seed(config["seed"]))
    ll = log_likelihood(rbm, v, log_z)
    result = {"step": step, "num": int(v.shape[0]), "held_out": f"{test.name} test split (binarised at 0.5)",
              "log_z_ais": log_z, "log_z_se": se, "log_likelihood_nats": float(ll.mean()),
              "log_likelihood_sd": float(ll.std()), "ais": {"chains": 100, "betas": 2000}}
    if out is not None:
        write_json(Path(out) / "eval.json", result)
    log(f"held-out log-likelihood {result['log_likelihood_nats']:.2f} nats per image (log Z by AIS {log_z:.2f} ± {se:.2f}; "
        f"{v.shape[0]} images)")
    return result


def _check_run(saved: dict, out: Path) -> None:
    if saved.get("kind") != EBM:
        raise DifflabError(f"{str(out)!r} is not an energy-based run; resume it with the command that made it.")


def train_ebm(config: dict | None, out: str | Path, steps: int | None = None, seed: int | None = None,
              resume: bool = False, device: str | None = None, progress: bool = True, max_minutes: float | None = None,
              log=print, *, log_every: int | None = None, sample_every: int | None = None,
              save_every: int | None = None) -> Path:
    """Train (or, with ``resume``, continue) the energy-based run ``out``; returns ``out``."""
    if from_env().started:
        raise DifflabError("energy-based training runs in one process (its persistent chains live there); launch it "
                           "without torchrun.")
    out = Path(out)
    config = prepare_run_config(out, None if config is None else validate(config), resume, seed, command="train",
                                resumable=RESUMABLE_KEYS, check_saved=lambda saved: _check_run(saved, out))
    check_run_length(steps, max_minutes)
    options = {"steps": steps, "log_every": log_every, "sample_every": sample_every, "save_every": save_every}
    config["train"].update({k: v for k, v in options.items() if v is not None})
    opts = LoopOptions.from_section(config["train"])
    return fit(EBMTrainable(config, read_record(out) if resume else None), out, opts, config["seed"], resume=resume,
               device=device, progress=progress, max_minutes=max_minutes, log=log)
