"""Exported models and the pretrained models shipped inside the package.

An exported model is a small directory: ``config.json`` (the run's resolved config),
``model.safetensors`` (the EMA weights) and ``model.json`` (the step it was taken at, the SHA-256
of the weights, and free-form notes such as how it was trained). ``difflab export RUN --out DIR``
writes one from a run directory; ``difflab.load`` reads run directories, exported directories and
the names of the shipped models (:func:`names`) alike.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .errors import DifflabError

WEIGHTS = "model.safetensors"
META = "model.json"
_SHIPPED = Path(__file__).parent / "weights"


def names() -> list[str]:
    """Names of the pretrained models shipped with difflab (``difflab sample <name> ...``)."""
    if not _SHIPPED.is_dir():
        return []
    return sorted(p.name for p in _SHIPPED.iterdir() if (p / WEIGHTS).is_file())


def shipped_path(name: str) -> Path | None:
    """The directory of shipped model ``name``, or None."""
    return _SHIPPED / name if name in names() else None


def is_exported(path: str | Path) -> bool:
    return (Path(path) / WEIGHTS).is_file() and (Path(path) / META).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(run_dir: str | Path, out: str | Path, weights: str = "ema", notes: str = "",
           tensors: dict | None = None, step: int | None = None) -> Path:
    """Write the ``weights`` (ema or model) of a run's newest valid checkpoint as an exported model
    in ``out``, atomically (a temporary directory renamed into place). Returns ``out``. Given ``tensors`` (a state
    dict of the run's network, e.g. a post-hoc EMA) and their ``step``, those are written instead, ``weights``
    naming them."""
    from . import checkpoint
    from .io import atomic_directory

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise DifflabError(f"⟨out⟩ {str(out)!r} already exists; choose a new directory.")
    from .io import check_writable
    check_writable(out, "exported model directory", directory=True)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise DifflabError(f"{str(run_dir)!r} is not a run directory (no config.json).")
    if tensors is None:
        ckpt = checkpoint.latest_valid(run_dir)
        step = json.loads((ckpt / "state.json").read_text())["step"]
    with atomic_directory(out) as tmp:
        if tensors is None:
            shutil.copyfile(ckpt / f"{weights}.safetensors", tmp / WEIGHTS)
        else:
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        shutil.copyfile(config_path, tmp / "config.json")
        if (run_dir / checkpoint.RECORD).exists():  # what training measured, beside the config
            shutil.copyfile(run_dir / checkpoint.RECORD, tmp / checkpoint.RECORD)
        from .data_gaussian import FILE as GAUSSIAN
        if (run_dir / GAUSSIAN).is_file():  # the data's Gaussian a sampling start may need (difflab fit-gaussian)
            shutil.copyfile(run_dir / GAUSSIAN, tmp / GAUSSIAN)
        meta = {"step": step, "weights": weights, "sha256": _sha256(tmp / WEIGHTS), "notes": notes}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_exported(path: str | Path) -> tuple[dict, dict, int]:
    """(config, weights, step) of an exported model, its checksum verified."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError as e:
        raise DifflabError(f"exported model {str(path)!r} is incomplete: {Path(e.filename).name} is missing.") from None
    except json.JSONDecodeError:
        raise DifflabError(f"exported model {str(path)!r} has a corrupt config.json or {META} (not valid JSON).") from None
    if _sha256(path / WEIGHTS) != meta.get("sha256"):
        raise DifflabError(f"weights file {str(path / WEIGHTS)!r} is truncated or corrupt (checksum mismatch).")
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:  # pragma: no cover - the checksum catches these first
        raise DifflabError(f"weights file {str(path / WEIGHTS)!r} could not be read ({e}).") from None
    from . import checkpoint

    return checkpoint.with_record(config, checkpoint.read_record(path)), tensors, int(meta.get("step", 0))


def model_dir(path: str | Path) -> Path:
    """The directory of a model given as a run directory, an exported directory or a shipped model's name (a
    directory of that name wins); one clear error when it is none of them."""
    path = Path(path)
    if not path.is_dir() and shipped_path(str(path)) is not None:
        path = shipped_path(str(path))
    if not path.is_dir():
        shipped = ", ".join(names()) or "none installed"
        raise DifflabError(f"run directory {str(path)!r} does not exist, and it is not the name of a "
                           f"pretrained model ({shipped}).")
    return path


def read_model_config(path: str | Path) -> dict:
    """The config (with defaults and the run's record) of a run directory, an exported directory or a shipped model,
    without reading its weights."""
    from . import checkpoint
    from .config import with_defaults

    return with_defaults(checkpoint.read_config(model_dir(path), "a difflab run or exported model"))


def read_model_record(path: str | Path) -> dict:
    """What training measured for a model (its data normalisation, ...): a run's ``record.json``; an exported model
    keeps the normalisation in its ``config.json``."""
    from . import checkpoint

    path = model_dir(path)
    record = checkpoint.read_record(path)
    if "normalization" not in record:
        config = checkpoint.read_config(path, "a difflab run or exported model")
        if isinstance(config.get("normalization"), dict):
            record = {**record, "normalization": config["normalization"]}
    return record


def read_model(path: str | Path, weights: str = "ema") -> tuple[Path, dict, dict, int, Path]:
    """(directory, config with defaults, weights, step, where the weights lie) of a diffusion model: the newest valid
    checkpoint of a run directory (``weights``: "ema" or "model"), an exported model directory, or the name of a
    shipped model (:func:`names`)."""
    from . import checkpoint
    from .config import with_defaults

    if weights not in ("ema", "model"):
        raise DifflabError(f"weights must be 'ema' or 'model', got {weights!r}.")
    path = model_dir(path)
    if is_exported(path) and not checkpoint.list_checkpoints(path):
        config, state, step = read_exported(path)
        config, where = with_defaults(config), path / WEIGHTS
    else:
        if not (path / "config.json").is_file() and not checkpoint.list_checkpoints(path):
            raise DifflabError(f"{str(path)!r} is neither a difflab run (config.json and checkpoints), an exported "
                               "difflab model (model.safetensors and model.json) nor a diffusers model folder "
                               "(model_index.json, or config.json with scheduler_config.json).")
        config = with_defaults(checkpoint.read_config(path))
        where = checkpoint.latest_valid(path)
        state = checkpoint.load_tensors(where, weights)
        step = json.loads((where / "state.json").read_text())["step"]
    for section in ("data", "model", "diffusion", "sample", "normalization"):
        if not isinstance(config.get(section), dict):
            raise DifflabError(f"the config of {str(path)!r} lacks its {section!r} section (a mapping); it is not a "
                               "complete diffusion run.")
    return path, config, state, step, where
