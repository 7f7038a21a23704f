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
import os
import shutil
import tempfile
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


def export(run_dir: str | Path, out: str | Path, weights: str = "ema", notes: str = "") -> Path:
    """Write the ``weights`` (ema or model) of a run's newest valid checkpoint as an exported model
    in ``out``, atomically (a temporary directory renamed into place). Returns ``out``."""
    from .io import _fsync_dir
    from . import checkpoint

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise DifflabError(f"⟨out⟩ {str(out)!r} already exists; choose a new directory.")
    from .io import check_writable
    check_writable(out, "exported model directory", directory=True)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise DifflabError(f"{str(run_dir)!r} is not a run directory (no config.json).")
    ckpt = checkpoint.latest_valid(run_dir)
    state = json.loads((ckpt / "state.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(ckpt / f"{weights}.safetensors", tmp / WEIGHTS)
        shutil.copyfile(config_path, tmp / "config.json")
        if (run_dir / checkpoint.RECORD).exists():  # what training measured, beside the config
            shutil.copyfile(run_dir / checkpoint.RECORD, tmp / checkpoint.RECORD)
        meta = {"step": state["step"], "weights": weights, "sha256": _sha256(tmp / WEIGHTS), "notes": notes}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        for p in tmp.iterdir():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
