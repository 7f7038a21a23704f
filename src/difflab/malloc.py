"""glibc's malloc, set up for large tensors: keep freed blocks in the heap instead of handing them back.

A PyTorch CPU tensor is one ``malloc`` block. glibc serves a block larger than its *mmap threshold* (dynamic,
at most 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, and it trims the heap's free top
back to the kernel once it passes the *trim threshold*. A U-Net at batch 256 allocates and frees activations of
25-50 MB every layer, so each one is mapped, page-faulted in (the kernel zeroes every page) and unmapped again:
sampling the shipped MNIST model spent about half its CPU time in the kernel doing that. PyTorch's CPU
performance guide cures the same thing with a caching allocator (jemalloc, tcmalloc) preloaded; raising both
thresholds with ``mallopt(3)`` gets glibc to cache the blocks itself, with nothing to install.

:func:`keep_large_blocks` runs when ``difflab`` is imported. It changes where memory comes from, never what a
computation gives (results stay bit-identical; a test checks it), and it is skipped

* when ``DIFFLAB_MALLOC=default`` (or ``off``/``0``) is set;
* where the C library is not glibc (macOS, Windows, musl);
* where the user already chose: ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc``
  tunable in the environment, or another allocator preloaded (``LD_PRELOAD``).

The cost: memory freed after a peak stays with the process (up to :data:`TRIM_THRESHOLD` at the heap's top) for
reuse, instead of going back to the system at once.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: blocks below this size come from the heap, not from their own mmap (mallopt's argument is a C int)
MMAP_THRESHOLD = 1 << 30
#: free memory at the heap's top is returned to the kernel only beyond this size
TRIM_THRESHOLD = 1 << 30

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_OFF = {"default", "off", "0", "no", "false"}
_applied: list[bool] = []


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        return ctypes.CDLL(None)
    except (ValueError, OSError, AttributeError):
        return None


def user_chose() -> str | None:
    """Why the malloc set-up is left to the user (a sentence), or None when difflab may set it."""
    if os.environ.get("DIFFLAB_MALLOC", "").strip().lower() in _OFF:
        return "DIFFLAB_MALLOC asks for glibc's default"
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        if name in os.environ:
            return f"{name} is set"
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets malloc"
    if os.environ.get("LD_PRELOAD", "").strip():
        return "a library is preloaded (LD_PRELOAD)"
    return None


def keep_large_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` (``mallopt``),
    once per process. Returns whether they are raised."""
    if _applied:
        return _applied[0]
    libc = None if user_chose() else _glibc()
    ok = bool(libc is not None
              and libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD))
              and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD)))
    _applied.append(ok)
    return ok


def applied() -> bool:
    """Whether this process runs with the raised thresholds."""
    return bool(_applied and _applied[0])
