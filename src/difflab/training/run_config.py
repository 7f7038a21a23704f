"""The config a run trains with: a new run's, or on resume the run's own, checked against the config given
(only the run-length and logging keys may differ), and the run directory made safely."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from .. import checkpoint
from ..errors import DifflabError
from ..random import check_seed


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, given: dict, resumable=frozenset()) -> list[str]:
    """Dotted keys whose values differ between a run's config and another one, the ``resumable`` keys (those a
    resumed run may change, such as its length) aside."""
    a = _flat({k: v for k, v in saved.items() if k not in ("normalization", "preset")})
    b = _flat({k: v for k, v in given.items() if k not in ("normalization", "preset")})
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in resumable:
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            show = lambda v: "unset" if v is missing else json.dumps(v)  # noqa: E731
            diffs.append(f"{key} (run: {show(va)}, given: {show(vb)})")
    return diffs


def prepare_run_config(out: Path, config: dict | None, resume: bool, seed: int | None, *, command: str,
                       resumable=frozenset(), read=None, check_saved=None) -> dict:
    """The config to train the run ``out`` with: on resume the run's own (completed by ``read``, refused by
    ``check_saved`` if of another kind, and checked against ``config`` if given: only the ``resumable`` keys may
    differ), else a copy of ``config`` for a new run directory. Reads only, so every rank can run it before any
    rank writes. ``command`` names the command in the error for a missing config."""
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            if not out.exists():
                raise DifflabError(f"cannot resume: run directory {str(out)!r} does not exist.")
            raise DifflabError(f"cannot resume: {str(out)!r} is not a run directory (no config.json).")
        try:
            saved = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            raise DifflabError(f"cannot resume: config file {str(cfg_path)!r} is corrupt (not valid JSON).") from None
        if not isinstance(saved, dict):
            raise DifflabError(f"cannot resume: config file {str(cfg_path)!r} must hold a mapping of sections, not a "
                               f"{type(saved).__name__}.")
        if check_saved is not None:  # a run of another kind, named before its config is read as this kind's
            check_saved(saved)
        saved = saved if read is None else read(saved)
        if config is not None:
            diffs = config_differences(saved, config, set(resumable) | {"seed"})  # the run keeps its seed
            if diffs:
                more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
                raise DifflabError(f"cannot resume {str(out)!r} with a different config: {'; '.join(diffs[:3])}{more}. "
                                   "Pass the preset or config file the run was started with, or choose a new ⟨out⟩.")
        if seed is not None and seed != saved.get("seed"):
            raise DifflabError(f"cannot resume {str(out)!r} with ⟨seed⟩ {seed}: the run was started with seed "
                               f"{saved.get('seed')}; leave ⟨seed⟩ out when resuming.")
        return saved
    if config is None:
        raise DifflabError(f"{command} needs a config (a preset name, a config file or a dict) unless it resumes a run.")
    if out.exists() and not out.is_dir():
        raise DifflabError(f"⟨out⟩ {str(out)!r} is a file, not a run directory.")
    if out.exists() and ((out / "config.json").exists() or checkpoint.list_checkpoints(out)):
        raise DifflabError(f"run directory {str(out)!r} already holds a run; set ⟨resume⟩ to continue it or choose another ⟨out⟩.")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise DifflabError(f"cannot create the run directory {str(out)!r}: {str(parent)!r} is not a writable directory.")
    config = copy.deepcopy(config)
    if seed is not None:
        config["seed"] = check_seed(seed, "seed", headroom=1)  # the noise generator takes seed + 1
    return config


def make_run_dir(out: Path) -> None:
    """Create the run directory ``out`` (and its parents), with one clear error when the file system refuses."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DifflabError(f"cannot create the run directory {str(out)!r} ({e.strerror or e}).") from None


def remove_stale_temp_files(out: Path) -> None:
    """Temporary files of atomic writes that a killed run left behind (config, log, plots, grids)."""
    patterns = [(out, ".config.json.*"), (out, ".record.json.*"), (out, ".log.csv.*"), (out, ".loss.png.*"),
                (out / "samples", ".step_*")]
    for folder, pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_file() and ".tmp" in p.name:
                p.unlink(missing_ok=True)
