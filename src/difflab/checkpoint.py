"""Checkpoints: safetensors weights plus a JSON state, written atomically, verified by checksum.

A checkpoint is a directory ``ckpt-<step>`` inside the run directory holding
``model.safetensors`` (raw weights), ``ema.safetensors`` (EMA weights, used for sampling),
``trainer.safetensors`` (optimizer moments, data order, RNG states) and ``state.json`` (step,
optimizer hyper-parameters, and the SHA-256 of each file). It is written into a temporary
directory, every file fsync'ed, then renamed into place, so a crash leaves either the old set of
checkpoints or the new one, never a half-written one. A temporary directory left by a killed
process (``.ckpt-*``, ``.trash.*``) is ignored when reading and removed by the next save. The
last ``keep`` checkpoints are kept. Nothing is pickled.

Test hook: ``DIFFLAB_TEST_SLOW_SAVE=<seconds>`` sleeps that long before each file of a save, to
widen the window in which ``tests/test_resume_kill.py`` kills the process mid-write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .errors import DifflabError
from .io import _fsync_dir, read_json_mapping

PREFIX = "ckpt-"
FILES = ("model.safetensors", "ema.safetensors", "trainer.safetensors")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _test_pause() -> None:
    delay = os.environ.get("DIFFLAB_TEST_SLOW_SAVE")
    if delay:
        time.sleep(float(delay))


def remove_leftovers(run_dir: str | Path) -> None:
    """Delete temporary directories that an interrupted save left in ``run_dir``."""
    for p in Path(run_dir).glob(f".{PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in Path(run_dir).glob(".trash.*"):
        shutil.rmtree(p, ignore_errors=True)


def save(run_dir: str | Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict, keep: int = 2) -> Path:
    """Write checkpoint ``step``: ``tensors`` maps each of model/ema/trainer to a flat tensor dict."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)  # one writer per run directory: any temporary one is a killed save's
    final = run_dir / f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=run_dir))
    try:
        checksums = {}
        for name in FILES:
            key = name.split(".")[0]
            path = tmp / name
            _test_pause()
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors[key].items()}, str(path))
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            checksums[name] = _sha256(path)
        _test_pause()
        with open(tmp / "state.json", "w") as f:
            json.dump({**state, "step": step, "sha256": checksums}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step: move the old one aside first
            trash = Path(tempfile.mkdtemp(prefix=".trash.", dir=run_dir))
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:  # renamed first, so a kill never leaves half of one
        trash = Path(tempfile.mkdtemp(prefix=".trash.", dir=run_dir))
        os.replace(old, trash / old.name)
        shutil.rmtree(trash, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories of a run, oldest first (temporary ones are ignored)."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def verify(ckpt: str | Path) -> dict:
    """Check every file of a checkpoint against its recorded checksum; return its state."""
    ckpt = Path(ckpt)
    state_path = ckpt / "state.json"
    try:
        state = json.loads(state_path.read_text())
        checksums = state["sha256"]
    except FileNotFoundError:
        raise DifflabError(f"checkpoint {str(ckpt)!r} has no state.json; it is incomplete.") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DifflabError(f"checkpoint file {str(state_path)!r} is corrupt (not the JSON difflab writes).") from None
    for name in FILES:
        path = ckpt / name
        if not path.is_file():
            raise DifflabError(f"checkpoint file {str(path)!r} is missing.")
        if _sha256(path) != checksums.get(name):
            raise DifflabError(f"checkpoint file {str(path)!r} is truncated or corrupt (checksum mismatch).")
    return state


def latest_valid(run_dir: str | Path) -> Path:
    """The newest checkpoint that verifies; older ones are tried with a warning for each bad one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DifflabError(f"run directory {str(run_dir)!r} does not exist.")
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise DifflabError(f"run directory {str(run_dir)!r} holds no checkpoint (no {PREFIX}* directory).")
    errors = []
    for ckpt in reversed(candidates):
        try:
            verify(ckpt)
        except DifflabError as e:
            errors.append(str(e))
            continue
        for e in errors:  # a newer checkpoint was bad: say so, and which one is used instead
            warnings.warn(f"{e} Falling back to {ckpt.name}.", stacklevel=2)
        return ckpt
    more = f" (and {len(errors) - 1} older one(s) as well)" if len(errors) > 1 else ""
    raise DifflabError(f"no valid checkpoint in {str(run_dir)!r}: {errors[0].rstrip('.')}{more}.")


def load_tensors(ckpt: str | Path, name: str) -> dict[str, torch.Tensor]:
    """Read ``<name>.safetensors`` of a checkpoint (model, ema or trainer)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(ckpt) / f"{name}.safetensors"
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DifflabError(f"checkpoint file {str(path)!r} could not be read ({e}).") from None


def read_config(run_dir: str | Path, what: str = "a run directory") -> dict:
    """A run's ``config.json`` with what training measured (its ``record.json``) merged in: the config a loaded
    model works with. One clear error when the config is missing (``run_dir`` is not ``what``) or corrupt."""
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DifflabError(f"{str(run_dir)!r} is not {what} (no config.json).") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DifflabError(f"config file {str(path)!r} is corrupt (not valid JSON).") from None
    if not isinstance(config, dict):
        raise DifflabError(f"config file {str(path)!r} must hold a mapping of sections, not a {type(config).__name__}.")
    return with_record(config, read_record(run_dir))


#: beside config.json (what was asked for), what training measured: the data normalisation, a latent run's
#: scale factor, latent shape and clip range, a classifier's number of classes read off its data
RECORD = "record.json"


def read_record(run_dir: str | Path) -> dict:
    """A run's ``record.json``, or {} for a run that has none (older runs kept these values in config.json)."""
    path = Path(run_dir) / RECORD
    if not path.exists():
        return {}
    return read_json_mapping(path, "run record")


def with_record(config: dict, record: dict) -> dict:
    """``config`` with the measured values of ``record`` merged in, section by section (a copy)."""
    out = dict(config)
    for key, value in record.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "normalization":
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_into(model: torch.nn.Module, state: dict, where: str | Path, what: str = "model") -> None:
    """``model.load_state_dict(state)``, with one clear error when the weights at ``where`` do not fit it."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__  # the first mismatch
        raise DifflabError(f"weights in {str(where)!r} do not match the {what} in config.json ({detail[:200]}).") from None


def load_latest(model: torch.nn.Module, run_dir: str | Path, weights: str = "ema", what: str = "model") -> int:
    """Load the ``weights`` ("ema" or "model") of the newest valid checkpoint of ``run_dir`` into ``model``;
    returns that checkpoint's step."""
    if weights not in ("ema", "model"):
        raise DifflabError(f"weights must be 'ema' or 'model', got {weights!r}.")
    where = latest_valid(run_dir)
    load_into(model, load_tensors(where, weights), where, what)
    return json.loads((where / "state.json").read_text())["step"]
