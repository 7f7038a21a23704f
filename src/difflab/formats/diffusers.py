"""diffusers' model folders, out of difflab and into it.

A diffusers DDPM/DDIM model is a folder: ``model_index.json`` (the pipeline and its parts), ``unet/config.json`` and
``unet/diffusion_pytorch_model.safetensors`` (a ``UNet2DModel``), ``scheduler/scheduler_config.json`` (the noise
schedule and prediction type). The public DDPM checkpoints keep the same files flat in one folder; both layouts read.

Conventions that differ, and how they meet:

* **Time.** diffusers' timestep k = 0..T−1 indexes its tables, and ``alphas_cumprod[k]`` is difflab's ᾱ_{k+1}
  (difflab's t = 0 is the data). A difflab network is told t = k + 1. On export the time embedding is rewritten so
  the diffusers network, told k, computes what difflab's computed at k + 1 (:func:`shift_time_embedding`); on import
  the adapter (:class:`~difflab.models.foreign.DiffusersUNet`) tells the diffusers network t − 1.
* **Schedules.** difflab's ``linear`` and ``quadratic`` β are given for T = 1000 and rescaled by 1000/T; diffusers'
  ``linear`` and ``scaled_linear`` take the endpoints as they are. ``cosine`` (s = 0.008) is ``squaredcos_cap_v2``,
  ``zero_terminal_snr`` is ``rescale_betas_zero_snr``.
* **Predictions.** ε, x_0, v are ``epsilon``, ``sample``, ``v_prediction``; clipping x̂_0 to [−1, 1] is
  ``clip_sample`` with ``clip_sample_range`` 1.
* **Classes.** difflab's class-conditional U-Net keeps K + 1 class embeddings, the last (label K) the null label of
  classifier-free guidance; it exports as ``num_class_embeds`` = K + 1 and says K in ``difflab.json``.

Writing needs no diffusers; reading builds diffusers' ``UNet2DModel`` (the ``difflab[diffusers]`` extra).
Whatever has no diffusers equivalent is refused by name rather than written as a model that samples differently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import DifflabError

MODEL_INDEX = "model_index.json"
UNET_CONFIG = "config.json"
SCHEDULER_CONFIG = "scheduler_config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED_WEIGHTS = "diffusion_pytorch_model.bin"
#: difflab's own record beside the diffusers files: data, normalisation, sampling defaults, classes, step
DIFFLAB = "difflab.json"
#: the oldest diffusers these folders are written for (the ``_diffusers_version`` of the configs)
DIFFUSERS_VERSION = "0.30.0"

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
#: difflab schedule -> diffusers beta_schedule (β endpoints rescaled by 1000/T on the difflab side)
BETA_SCHEDULES = {"linear": "linear", "quadratic": "scaled_linear", "cosine": "squaredcos_cap_v2"}
COSINE_OFFSET = 0.008  # squaredcos_cap_v2's s (Nichol & Dhariwal 2021, Eq. 17)
#: diffusers scheduler class -> the difflab sampler an imported model samples with by default
SCHEDULER_SAMPLERS = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "DPMSolverMultistepScheduler": "dpmpp_2m",
                      "EulerDiscreteScheduler": "euler", "HeunDiscreteScheduler": "heun",
                      "UniPCMultistepScheduler": "unipc", "PNDMScheduler": "plms"}


# ------------------------------------------------------------------------------------------------ schedules
def scheduler_config(diffusion: dict, sample: dict) -> dict:
    """The ``DDPMScheduler`` config of a difflab run's ``diffusion`` and ``sample`` sections (DDIMPipeline turns it into
    a DDIMScheduler config); refuses a schedule, prediction or variance diffusers has no equivalent of."""
    name, params, T = diffusion["schedule"], dict(diffusion.get("schedule_params") or {}), diffusion["T"]
    zero_snr = bool(params.pop("zero_terminal_snr", False))
    if diffusion.get("formulation") not in (None, "ddpm") or name not in BETA_SCHEDULES:
        raise DifflabError(f"diffusers has no scheduler for difflab's {name!r} schedule (formulation "
                           f"{diffusion.get('formulation')!r}); only discrete DDPM schedules export: linear, quadratic "
                           "(scaled_linear) and cosine (squaredcos_cap_v2).")
    parameterization = diffusion["parameterization"]
    if parameterization not in PREDICTION_TYPES:
        raise DifflabError(f"diffusers' schedulers read ε, x_0 or v predictions (epsilon, sample, v_prediction), "
                           f"not difflab's {parameterization!r} parameterization.")
    if diffusion.get("learned_variance"):
        raise DifflabError("a learned-variance model (diffusion.learned_variance) does not export: diffusers' DDIM "
                           "scheduler reads no variance output, and its DDPM 'learned_range' clamps β̃_1 differently "
                           "from Nichol & Dhariwal's.")
    out = {"_class_name": "DDPMScheduler", "_diffusers_version": DIFFUSERS_VERSION, "num_train_timesteps": T,
           "beta_schedule": BETA_SCHEDULES[name], "trained_betas": None,
           "prediction_type": PREDICTION_TYPES[parameterization], "clip_sample": bool(sample.get("clip")),
           "clip_sample_range": 1.0, "variance_type": "fixed_small", "thresholding": False,
           "timestep_spacing": "trailing", "steps_offset": 0, "rescale_betas_zero_snr": zero_snr}
    if name == "cosine":
        s = params.pop("s", COSINE_OFFSET)
        if s != COSINE_OFFSET:
            raise DifflabError(f"diffusers' squaredcos_cap_v2 has s = {COSINE_OFFSET}; this run's cosine schedule has "
                               f"s = {s!r}, which diffusers cannot express.")
    else:
        out["beta_start"] = params.pop("beta_start", 1e-4) * 1000 / T
        out["beta_end"] = params.pop("beta_end", 0.02) * 1000 / T
    if params:
        raise DifflabError(f"schedule parameters {sorted(params)} have no diffusers equivalent.")
    return out


def diffusion_section(scheduler: dict) -> dict:
    """The difflab ``diffusion`` section of a diffusers scheduler config; one clear error for each option without a
    difflab equivalent."""
    T = scheduler.get("num_train_timesteps", 1000)
    beta = scheduler.get("beta_schedule", "linear")
    if scheduler.get("trained_betas") is not None:
        raise DifflabError("the scheduler gives its own β (trained_betas); difflab reads named schedules only "
                           "(linear, scaled_linear, squaredcos_cap_v2).")
    reverse = {v: k for k, v in BETA_SCHEDULES.items()}
    if beta not in reverse:
        raise DifflabError(f"the scheduler's beta_schedule {beta!r} has no difflab equivalent; difflab reads "
                           f"{', '.join(reverse)}.")
    prediction = scheduler.get("prediction_type", "epsilon")
    parameterizations = {v: k for k, v in PREDICTION_TYPES.items()}
    if prediction not in parameterizations:
        raise DifflabError(f"the scheduler's prediction_type {prediction!r} has no difflab equivalent; difflab reads "
                           f"{', '.join(parameterizations)}.")
    if scheduler.get("thresholding"):
        raise DifflabError("the scheduler uses dynamic thresholding (thresholding: true), which difflab's samplers do "
                           "not implement.")
    variance = scheduler.get("variance_type", "fixed_small")
    if variance not in (None, "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"):
        raise DifflabError(f"the scheduler's variance_type {variance!r} (a learned variance) has no difflab equivalent.")
    if scheduler.get("clip_sample") and scheduler.get("clip_sample_range", 1.0) != 1.0:
        raise DifflabError(f"the scheduler clips x̂_0 to ±{scheduler['clip_sample_range']}; difflab clips images to "
                           "±1 only.")
    if not isinstance(T, int) or T < 1:
        raise DifflabError(f"the scheduler's num_train_timesteps must be a positive integer, got {T!r}.")
    params: dict = {}
    if beta in ("linear", "scaled_linear"):
        params = {"beta_start": scheduler.get("beta_start", 1e-4) * T / 1000,
                  "beta_end": scheduler.get("beta_end", 0.02) * T / 1000}
    if scheduler.get("rescale_betas_zero_snr"):
        params["zero_terminal_snr"] = True
    return {"formulation": "ddpm", "schedule": reverse[beta], "T": T, "schedule_params": params,
            "parameterization": parameterizations[prediction], "learned_variance": False}


# ------------------------------------------------------------------------------------------------- the U-Net
def unet_config(model: dict) -> dict:
    """The ``UNet2DModel`` config that builds the same network as difflab's ``UNet(**model)`` (the DDPM layout)."""
    kind = model.get("type")
    if kind != "unet":
        raise DifflabError(f"diffusers' UNet2DModel holds difflab's 'unet' networks; a {kind!r} model has no "
                           "diffusers equivalent.")
    adm = [k for k in ("num_head_channels", "resblock_updown", "scale_shift_norm", "rescale_residuals") if model.get(k)]
    if adm:
        raise DifflabError(f"the U-Net options {adm} (ADM's layout) have no mapping to diffusers' UNet2DModel here; "
                           "only the DDPM layout exports.")
    if model.get("cond_channels"):
        raise DifflabError("a U-Net conditioned on an image (model.cond_channels, super-resolution) has no "
                           "UNet2DModel equivalent.")
    if model.get("num_heads", 1) != 1:
        raise DifflabError(f"the U-Net has num_heads = {model['num_heads']}; only one attention head per block exports.")
    c, mult = model["base_channels"], list(model["channel_mult"])
    if min(c * m for m in mult) < model["groups"]:
        raise DifflabError(f"a level of the U-Net has fewer channels ({min(c * m for m in mult)}) than groups "
                           f"({model['groups']}); difflab then normalises with fewer groups, diffusers cannot.")
    if c % 2:
        raise DifflabError(f"the U-Net's base_channels ({c}) must be even for its time embedding to export.")
    size = model["image_size"]
    attn = [size // 2**level in model["attention_resolutions"] for level in range(len(mult))]
    k = model.get("num_classes")
    return {
        "_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION,
        "sample_size": size, "in_channels": model["in_channels"],
        "out_channels": model["out_channels"] or model["in_channels"],
        "block_out_channels": [c * m for m in mult], "layers_per_block": model["num_res_blocks"],
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "mid_block_type": "UNetMidBlock2D", "add_attention": True, "attention_head_dim": None,
        "norm_num_groups": model["groups"], "norm_eps": 1e-6, "act_fn": "silu",
        "time_embedding_type": "positional", "time_embedding_dim": 4 * c,
        "flip_sin_to_cos": True, "freq_shift": 0,  # [cos, sin] with frequencies exp(−ln(10⁴) i/half), as difflab's
        "downsample_type": "conv", "downsample_padding": 1, "upsample_type": "conv",
        "resnet_time_scale_shift": "default", "mid_block_scale_factor": 1, "dropout": model["dropout"],
        "center_input_sample": False,
        "num_class_embeds": k + 1 if k else None,  # difflab's K classes and its null label K
    }


def shift_time_embedding(weight: torch.Tensor, dim: int, shift: float = 1.0) -> torch.Tensor:
    """The first time-embedding layer's weight W' with W' e(k) = W e(k + shift) for the sinusoidal embedding
    e(k) = [cos(ω_i k), sin(ω_i k)], ω_i = exp(−ln(10⁴) i/half) (Vaswani et al. 2017, Sec. 3.5; DDPM's embedding):
    e(k + s) = R(s) e(k) with R a rotation by ω_i s in each (cos, sin) pair, so W' = W R (computed in float64)."""
    half = dim // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half) * shift
    cos, sin = omega.cos(), omega.sin()
    w = weight.double()
    wc, ws = w[:, :half], w[:, half:2 * half]
    out = w.clone()
    out[:, :half] = wc * cos + ws * sin
    out[:, half:2 * half] = ws * cos - wc * sin
    return out.to(weight.dtype)


def _resblock_keys(src: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{src}.{a}", f"{dst}.{b}") for a, b in (
        ("norm1", "norm1"), ("conv1", "conv1"), ("emb_proj", "time_emb_proj"), ("norm2", "norm2"),
        ("conv2", "conv2"), ("skip", "conv_shortcut"))]


def unet_weights(model: dict, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """difflab U-Net weights renamed for the ``UNet2DModel`` of :func:`unet_config` (attention's fused q/k/v split),
    the time embedding shifted by one step (:func:`shift_time_embedding`)."""
    pairs = [("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
             ("conv_in", "conv_in"), ("norm_out", "conv_norm_out"), ("conv_out", "conv_out"),
             ("class_embed", "class_embedding")]
    attn = []  # (difflab prefix, diffusers prefix)
    levels, blocks = len(model["channel_mult"]), model["num_res_blocks"]
    i = 0
    for level in range(levels):
        for j in range(blocks):
            pairs += _resblock_keys(f"down.{i}.res", f"down_blocks.{level}.resnets.{j}")
            attn.append((f"down.{i}.attn", f"down_blocks.{level}.attentions.{j}"))
            i += 1
        if level != levels - 1:
            pairs.append((f"down.{i}.conv", f"down_blocks.{level}.downsamplers.0.conv"))
            i += 1
    pairs += _resblock_keys("mid.res", "mid_block.resnets.0") + _resblock_keys("mid2", "mid_block.resnets.1")
    attn.append(("mid.attn", "mid_block.attentions.0"))
    i = 0
    for level in range(levels):
        for j in range(blocks + 1):
            pairs += _resblock_keys(f"up.{i}.res", f"up_blocks.{level}.resnets.{j}")
            attn.append((f"up.{i}.attn", f"up_blocks.{level}.attentions.{j}"))
            pairs.append((f"up.{i}.up.conv", f"up_blocks.{level}.upsamplers.0.conv"))
            i += 1
    for src, dst in attn:
        pairs += [(f"{src}.norm", f"{dst}.group_norm"), (f"{src}.proj_out", f"{dst}.to_out.0")]
    out, used = {}, set()
    for src, dst in pairs:
        for p in ("weight", "bias"):
            if f"{src}.{p}" in state:
                out[f"{dst}.{p}"] = state[f"{src}.{p}"]
                used.add(f"{src}.{p}")
    for src, dst in attn:
        for p in ("weight", "bias"):
            if f"{src}.qkv.{p}" in state:
                q, k, v = state[f"{src}.qkv.{p}"].chunk(3, dim=0)
                out.update({f"{dst}.to_q.{p}": q, f"{dst}.to_k.{p}": k, f"{dst}.to_v.{p}": v})
                used.add(f"{src}.qkv.{p}")
    left = sorted(set(state) - used)
    if left:
        raise DifflabError(f"U-Net weights without a diffusers name: {left[:5]}; the network does not have the layout "
                           "its config describes.")
    out["time_embedding.linear_1.weight"] = shift_time_embedding(out["time_embedding.linear_1.weight"],
                                                                 model["base_channels"])
    return {k: v.contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------------------------------- export
def export(path: str | Path, out: str | Path, weights: str = "ema", notes: str = "") -> Path:
    """Write the model at ``path`` (a run, an exported model, a shipped name, or a diffusers folder read by difflab)
    as a diffusers DDPMPipeline folder in ``out``, atomically. Checks everything before writing anything."""
    from safetensors.torch import save_file

    from ..io import atomic_directory, check_writable
    from . import read_model

    out = Path(out)
    if out.exists():
        raise DifflabError(f"⟨out⟩ {str(out)!r} already exists; choose a new directory.")
    check_writable(out, "diffusers model directory", directory=True)
    source, config, state, step, _ = read_model(path, weights)
    if "latent" in config:
        raise DifflabError("a latent diffusion run needs its autoencoder, which a DDPMPipeline folder does not hold; "
                           "latent runs do not export to diffusers.")
    model = config["model"]
    scheduler = scheduler_config(config["diffusion"], config["sample"])
    if model["type"] == "diffusers-unet2d":  # read from diffusers: its own config and weights, as they were
        unet = dict(model["unet_config"])
        tensors = {k.removeprefix("unet."): v.contiguous() for k, v in state.items()}
    else:
        unet, tensors = unet_config(model), unet_weights(model, state)
    record = {"format": 1, "source": str(source), "step": step, "notes": notes, "seed": config.get("seed", 0),
              "num_classes": model.get("num_classes"),
              **{k: config[k] for k in ("data", "normalization", "sample")}}
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
             "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    with atomic_directory(out) as tmp:
        (tmp / "unet").mkdir()
        (tmp / "scheduler").mkdir()
        save_file(tensors, str(tmp / "unet" / WEIGHTS), metadata={"format": "pt"})
        for where, obj in ((tmp / "unet" / UNET_CONFIG, unet), (tmp / "scheduler" / SCHEDULER_CONFIG, scheduler),
                           (tmp / MODEL_INDEX, index), (tmp / DIFFLAB, record)):
            where.write_text(json.dumps(obj, indent=2) + "\n")
        from ..data_gaussian import FILE as GAUSSIAN
        if (Path(source) / GAUSSIAN).is_file():  # the data Gaussian the recorded sampling start needs
            import shutil
            shutil.copyfile(Path(source) / GAUSSIAN, tmp / GAUSSIAN)
    return out


# --------------------------------------------------------------------------------------------------- import
def _read_json(path: Path) -> dict:
    from ..io import read_json_mapping

    return read_json_mapping(path, "diffusers file")


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like a diffusers model folder: a ``model_index.json``, or a ``config.json`` written by
    diffusers (it names its ``_class_name``)."""
    path = Path(path)
    if (path / MODEL_INDEX).is_file():
        return True
    try:
        return "_class_name" in json.loads((path / UNET_CONFIG).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _part(path: Path, sub: str, name: str) -> Path | None:
    """The file ``name`` of a pipeline part: in its subfolder, or flat beside model_index.json (the public DDPM
    checkpoints' layout)."""
    for where in (path / sub / name, path / name):
        if where.is_file():
            return where
    return None


def read_folder(path: str | Path) -> tuple[Path, dict, dict, int, Path]:
    """(folder, difflab config with defaults, weights named for :class:`~difflab.models.foreign.DiffusersUNet`, step,
    weights file) of a diffusers DDPM/DDIM model folder. One clear error for a pipeline or model type difflab cannot
    run, a missing part, pickled weights, or a scheduler option without a difflab equivalent."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..config import with_defaults

    path = Path(path)
    scheduler_class = None
    if (path / MODEL_INDEX).is_file():
        index = _read_json(path / MODEL_INDEX)
        pipeline = index.get("_class_name", "a pipeline")
        parts = {k: v for k, v in index.items() if not k.startswith("_") and v is not None}
        unet_class = (parts.get("unet") or [None, None])[-1]
        extra = sorted(set(parts) - {"unet", "scheduler"})
        if unet_class != "UNet2DModel" or extra:
            what = f"its unet is a {unet_class}" if unet_class != "UNet2DModel" else f"it also holds {extra}"
            raise DifflabError(f"{str(path)!r} is a diffusers {pipeline} ({what}); difflab runs UNet2DModel pipelines "
                               "(DDPMPipeline, DDIMPipeline) only.")
        scheduler_class = (parts.get("scheduler") or [None, None])[-1]
    config_path = _part(path, "unet", UNET_CONFIG)
    if config_path is None:
        raise DifflabError(f"diffusers model {str(path)!r} is incomplete: unet/{UNET_CONFIG} is missing.")
    unet = _read_json(config_path)
    if unet.get("_class_name") != "UNet2DModel":
        raise DifflabError(f"{str(config_path)!r} describes a diffusers {unet.get('_class_name')}; difflab runs "
                           "UNet2DModel networks only (UNet2DConditionModel needs text encoders difflab does not load).")
    if unet.get("class_embed_type") not in (None,):
        raise DifflabError(f"the UNet2DModel's class_embed_type {unet['class_embed_type']!r} has no difflab "
                           "equivalent (difflab reads class labels through num_class_embeds).")
    scheduler_path = _part(path, "scheduler", SCHEDULER_CONFIG)
    if scheduler_path is None:
        raise DifflabError(f"diffusers model {str(path)!r} has no {SCHEDULER_CONFIG}: difflab needs the noise schedule "
                           "the network was trained with.")
    scheduler = _read_json(scheduler_path)
    weights_path = config_path.parent / WEIGHTS
    if not weights_path.is_file():
        if (config_path.parent / PICKLED_WEIGHTS).is_file():
            raise DifflabError(f"{str(config_path.parent)!r} holds its weights as a pickle ({PICKLED_WEIGHTS}), which "
                               "difflab never loads; convert them once to safetensors, e.g. UNet2DModel.from_pretrained"
                               "(DIR).save_pretrained(NEW_DIR).")
        raise DifflabError(f"diffusers model {str(path)!r} is incomplete: {WEIGHTS} is missing.")
    diffusion = diffusion_section(scheduler)
    record = _read_json(path / DIFFLAB) if (path / DIFFLAB).is_file() else {}
    channels, size = unet.get("in_channels", 3), unet.get("sample_size", 32)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    embeds = unet.get("num_class_embeds")
    model = {"type": "diffusers-unet2d", "unet_config": unet, "timestep_offset": 1,
             "num_classes": record.get("num_classes", embeds) if embeds else None}
    sampler = SCHEDULER_SAMPLERS.get(scheduler_class or scheduler.get("_class_name"), "ddim")
    sample = record.get("sample") or {"sampler": sampler, "steps": 50, "eta": 0.0,
                                      "clip": bool(scheduler.get("clip_sample", False))}
    normalization = record.get("normalization") or {"kind": "image", "shape": [channels, height, width],
                                                    "shift": [0.5], "scale": 0.5}
    config = with_defaults({"data": record.get("data") or {"name": "diffusers"}, "model": model,
                            "diffusion": diffusion, "sample": sample, "normalization": normalization,
                            "seed": record.get("seed", 0)})
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DifflabError(f"weights file {str(weights_path)!r} is truncated or corrupt ({e}).") from None
    return path, config, {f"unet.{k}": v for k, v in tensors.items()}, int(record.get("step", 0)), weights_path
