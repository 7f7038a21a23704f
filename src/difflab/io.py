"""Atomic file writes: a reader never sees a half-written file.

Every file difflab writes (weights, configs, pictures, tables) goes to a temporary file in the
target's directory, is flushed and fsync'ed, then renamed over the target with ``os.replace``,
which is atomic on POSIX and Windows. If anything fails in between, the temporary file is removed
and the old target, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def check_writable(path: str | os.PathLike, what: str = "output file", directory: bool = False) -> Path:
    """Refuse, before any work, an output ``path`` that cannot be written: an existing directory where a file is
    wanted (or a file where a directory is), or a parent that is not a writable directory and cannot be made."""
    from .errors import DifflabError

    path = Path(path)
    if path.is_dir() and not directory:
        raise DifflabError(f"{what} {str(path)!r} is a directory; give a file name.")
    if path.exists() and not path.is_dir() and directory:
        raise DifflabError(f"{what} {str(path)!r} is a file, not a directory.")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or not _can_create_in(parent):
        raise DifflabError(f"cannot write {what} {str(path)!r}: {str(parent)!r} is not a writable directory.")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder`` (a read-only or pseudo file system says no where access() said yes);
    the probe file is gone at once."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path``; on success fsync its files and rename it to ``path`` (which
    must not exist), so a reader sees the whole directory or none of it. On failure the temporary directory goes."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                os.chmod(p, 0o666 & ~_umask())  # some writers make 0600; give the files the usual permissions
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the directory the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def read_json_mapping(path: str | os.PathLike, what: str = "file"):
    """The JSON object in ``path``; one clear error when it is not valid JSON or not a mapping (named ``what``)."""
    from .errors import DifflabError

    try:
        obj = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DifflabError(f"{what} {str(path)!r} is corrupt (not valid JSON).") from None
    if not isinstance(obj, dict):
        raise DifflabError(f"{what} {str(path)!r} must hold a mapping, not a {type(obj).__name__}.")
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def npz_stream(path: str | os.PathLike, name: str, shape: tuple, dtype="float32"):
    """Write an ``.npz`` holding one array ``name`` of the known ``shape`` batch by batch: yields ``write(batch)``,
    which appends rows; memory stays that of one batch. The file appears (atomically) only once every row has been
    written; an interrupted write leaves nothing. ``np.load(path)[name]`` reads it like any ``np.savez`` file."""
    import zipfile

    import numpy as np

    from .errors import DifflabError

    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    written = [0]
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf, zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                     "fortran_order": False, "shape": shape})

            def write(batch) -> None:
                batch = np.ascontiguousarray(np.asarray(batch, dtype=dtype))
                if batch.shape[1:] != shape[1:] or written[0] + batch.shape[0] > shape[0]:
                    raise DifflabError(f"a batch of shape {batch.shape} does not continue an array of shape {shape} "
                                       f"after {written[0]} rows.")
                f.write(batch.tobytes())
                written[0] += batch.shape[0]

            yield write
        if written[0] != shape[0]:
            raise DifflabError(f"{str(path)!r} was given {written[0]} of its {shape[0]} rows; nothing was written.")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
