"""What a request may ask for, checked before any work, and the parameters a PNG carries.

Every check fails with one :class:`~difflab.errors.DifflabError` sentence naming the field; the server shows that
sentence in the page. A PNG written by the app carries its parameters as JSON in a text chunk (``difflab``), and
dropping it back into the app restores them (:func:`png_with_params`, :func:`params_from_png`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from ..errors import DifflabError

#: the text chunk key of the parameters
PNG_KEY = "difflab"
SEED_MAX = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many jobs the server holds (running and waiting)."""

    max_images: int = 16
    max_steps: int = 250
    max_cells: int = 12          # compare: samplers × steps
    running: int = 1             # jobs at once (a CPU: one; each uses every core)
    waiting: int = 8             # jobs queued behind them; more are refused
    max_upload_bytes: int = 4_000_000


def _int(d: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = d.get(key, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DifflabError(f"{key} must be a whole number from {lo} to {hi}, got {value!r}.")
    return value


def _float(d: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = d.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DifflabError(f"{key} must be a number from {lo} to {hi}, got {value!r}.") from None
    if not lo <= value <= hi:
        raise DifflabError(f"{key} must be a number from {lo} to {hi}, got {value!r}.")
    return value


def _choice(d: dict, key: str, default, choices) -> str:
    value = d.get(key, default)
    if value not in choices:
        raise DifflabError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}.")
    return value


def check_generate(d: dict, models: dict, limits: Limits, classifiers: dict | None = None,
                   classifiers_classes: dict | None = None) -> dict:
    """The checked parameters of a generation request: model, sampler, steps, discretization, eta, churn (Heun's
    S_churn), guidance (none | cfg | classifier), scale, classes, compose, classifier, num, seed. ``classifiers``:
    model → names of the classifiers that fit it; ``classifiers_classes``: classifier → its number of classes."""
    from .. import samplers
    from ..samplers.discretizations import NAMES

    if not isinstance(d, dict):
        raise DifflabError("the request must be a JSON object of parameters.")
    model = _choice(d, "model", next(iter(models), None), list(models))
    run = models[model]
    sampler = _choice(d, "sampler", run.config["sample"]["sampler"], samplers.for_models(run.parameterization))
    steps = _int(d, "steps", min(run.config["sample"]["steps"], limits.max_steps), 1, limits.max_steps)
    discretization = d.get("discretization") or None
    if discretization is not None:
        discretization = _choice(d, "discretization", None, [n for n in NAMES if n != "sections"])
    out = {"model": model, "sampler": sampler, "steps": steps, "discretization": discretization,
           "eta": _float(d, "eta", 0.0, 0.0, 1.0), "num": _int(d, "num", 4, 1, limits.max_images),
           "seed": _int(d, "seed", 0, 0, SEED_MAX)}
    guidance = _choice(d, "guidance", "none", ["none", "cfg", "classifier"])
    model_k = run.config["model"].get("num_classes") or 0
    classifier, k = None, model_k
    if guidance == "classifier":
        fitting = (classifiers or {}).get(model, [])
        if not fitting:
            raise DifflabError(f"no classifier fits model {model!r}; start the app with --classifier RUN (a noise-aware "
                               "classifier trained on the model's data and schedule).")
        classifier = _choice({"classifier": d.get("classifier") or fitting[0]}, "classifier", fitting[0], fitting)
        k = (classifiers_classes or {})[classifier]
    classes = d.get("classes") or []
    if isinstance(classes, str):
        classes = [c for c in classes.replace(" ", "").split(",") if c]
    try:
        classes = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise DifflabError(f"classes must be whole numbers separated by commas, got {d.get('classes')!r}.") from None
    if classes and not k:
        raise DifflabError(f"model {model!r} has no classes; give classes with a class-conditional model or with "
                           "classifier guidance.")
    for c in classes:
        if not 0 <= c < k:
            raise DifflabError(f"class {c} is out of range: {'the classifier' if classifier else f'model {model!r}'} "
                               f"knows classes 0..{k - 1}.")
    if guidance != "none" and not classes:
        raise DifflabError(f"{'classifier-free' if guidance == 'cfg' else 'classifier'} guidance needs at least one "
                           "class to guide towards.")
    if guidance == "cfg" and not model_k:
        raise DifflabError(f"model {model!r} has no classes; classifier-free guidance needs a class-conditional model.")
    out.update(classes=classes, guidance=guidance, scale=_float(d, "scale", 0.0, 0.0, 20.0),
               compose=bool(d.get("compose", False)), classifier=classifier,
               churn=_float(d, "churn", 0.0, 0.0, 100.0))
    if out["compose"] and len(classes) < 2:
        raise DifflabError("composition needs two or more classes.")
    return out


def tile_params(params: dict, i: int) -> dict:
    """The parameters that reproduce tile i of a generation alone: one image, seed + i, its own class."""
    classes = params["classes"]
    if classes and not params["compose"]:
        classes = [classes[i % len(classes)]]
    return {**params, "num": 1, "seed": params["seed"] + i, "classes": classes}


def png_with_params(image, params: dict) -> bytes:
    """A PNG of ``image`` (a (C, H, W) tensor in [0, 1]) whose ``difflab`` text chunk holds ``params`` as JSON."""
    from PIL import Image, PngImagePlugin

    pixels = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, json.dumps(params, sort_keys=True))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def params_from_png(data: bytes) -> dict:
    """The parameters a PNG written by the app carries; one clear error for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError):
        raise DifflabError("the dropped file is not a readable PNG image.") from None
    text = getattr(img, "text", {}).get(PNG_KEY)
    if text is None:
        raise DifflabError("this PNG carries no difflab parameters (only PNGs downloaded from the app do).")
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        raise DifflabError("this PNG's difflab parameters are corrupt (not valid JSON).") from None
    if not isinstance(params, dict):
        raise DifflabError("this PNG's difflab parameters are not a mapping.")
    return params


def image_from_data_url(url: str, what: str, limits: Limits):
    """A PIL image from a ``data:image/...;base64,`` URL (an upload or a painted canvas)."""
    import base64
    import binascii

    from PIL import Image, UnidentifiedImageError

    if not isinstance(url, str) or not url.startswith("data:image/") or "," not in url:
        raise DifflabError(f"{what} must be an image (a data:image/... URL), got {type(url).__name__}.")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise DifflabError(f"{what} is not valid base64 image data.") from None
    if len(raw) > limits.max_upload_bytes:
        raise DifflabError(f"{what} is {len(raw)} bytes; the limit is {limits.max_upload_bytes}.")
    try:
        img = Image.open(io.BytesIO(raw))
        if img.width * img.height > 4096 * 4096:
            raise DifflabError(f"{what} is {img.width}×{img.height} pixels; the limit is 4096×4096.")
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise DifflabError(f"{what} could not be read as an image.") from None
    return img


def check_edit(d: dict, models: dict, limits: Limits, classifiers: dict | None = None,
               classifiers_classes: dict | None = None) -> dict:
    """A generation request's parameters plus the edit's: task (inpaint | sdedit), method (replacement | repaint),
    strength (SDEdit's t_0 in (0, 1]); at most 4 outputs."""
    p = check_generate({**d, "num": d.get("num", 1)}, models, Limits(**{**limits.__dict__, "max_images": 4}),
                       classifiers, classifiers_classes)
    if models[p["model"]].kind != "image":
        raise DifflabError(f"model {p['model']!r} models 2-D points; editing needs an image model.")
    p["task"] = _choice(d, "task", "inpaint", ["inpaint", "sdedit"])
    p["method"] = _choice(d, "method", "replacement", ["replacement", "repaint"])
    p["strength"] = _float(d, "strength", 0.5, 0.0, 1.0)
    if p["task"] == "sdedit" and p["strength"] <= 0:
        raise DifflabError("strength must be above 0 (0 returns the input unchanged).")
    return p


def check_compare(d: dict, models: dict, limits: Limits, classifiers: dict | None = None,
                  classifiers_classes: dict | None = None) -> dict:
    """A generation request's parameters plus the grid's axes: ``samplers`` (rows) and ``steps_list`` (columns), at
    most ``limits.max_cells`` cells of at most 4 images."""
    from .. import samplers

    names = d.get("samplers") or ["ddim", "dpmpp_2m"]
    steps = d.get("steps_list") or [5, 10, 20]
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    if isinstance(steps, str):
        steps = [n for n in steps.replace(" ", "").split(",") if n]
    run = models.get(d.get("model", next(iter(models), None))) if isinstance(d, dict) else None
    usable = samplers.for_models(run.parameterization) if run is not None else samplers.names()
    for n in names:
        if n not in usable:
            raise DifflabError(f"unknown sampler {n!r}; expected some of {', '.join(usable)}.")
    steps = [_int({"steps": s}, "steps", 0, 1, limits.max_steps) for s in steps]
    if not names or not steps or len(names) * len(steps) > limits.max_cells:
        raise DifflabError(f"the grid must have 1 to {limits.max_cells} cells (samplers × steps), got "
                           f"{len(names)} × {len(steps)}.")
    p = check_generate({**d, "num": d.get("num", 2), "steps": steps[0], "sampler": names[0]}, models,
                       Limits(**{**limits.__dict__, "max_images": 4}), classifiers, classifiers_classes)
    return {**p, "samplers": list(names), "steps_list": steps}
