"""Checks of configuration values that every config shares: known sections and keys, integers and numbers in
range. Each raises a :class:`~difflab.errors.DifflabError` that names the key."""

from __future__ import annotations

import copy
import math

from .errors import DifflabError


def fill_sections(config: dict, sections: dict[str, dict], extra: set[str], what: str = "config") -> dict:
    """Check a config's top-level keys (the ``sections`` and the ``extra`` keys) and each section's keys, and
    merge every section given over its defaults; ``what`` names the kind of config in the errors."""
    if not isinstance(config, dict):
        raise DifflabError(f"a {what} must be a mapping of sections ({', '.join(sections)}).")
    known = set(sections) | set(extra)
    for key in config:
        if key not in known:
            raise DifflabError(f"unknown {what} key {key!r}; expected one of {', '.join(sorted(known))}.")
    out = {}
    for section, defaults in sections.items():
        given = config.get(section, {}) or {}
        if not isinstance(given, dict):
            raise DifflabError(f"config section {section!r} must be a mapping, got {type(given).__name__}.")
        for key in given:
            if key not in defaults:
                raise DifflabError(f"unknown {what} key '{section}.{key}'; expected one of {', '.join(defaults)}.")
        out[section] = {**copy.deepcopy(defaults), **copy.deepcopy(given)}
    return out


def check_integer(value, name: str, minimum: int = 1) -> None:
    """Refuse anything but an integer >= ``minimum`` (booleans included), naming the key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        want = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise DifflabError(f"⟨{name}⟩ must be {want}, got {value!r}.")


def check_number(value, name: str, low: float = 0.0, high: float | None = None, positive: bool = False,
                 why: str = "") -> None:
    """Refuse anything but a finite number >= ``low`` (> ``low`` when ``positive``) and < ``high``, naming the key."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (value > low if positive else value >= low) and (high is None or value < high)
    if not ok:
        if high is not None:
            want = f"a number in {'(' if positive else '['}{low:g}, {high:g})"
        elif positive:
            want = "a positive number" if low == 0 else f"a number > {low:g}"
        else:
            want = f"a number >= {low:g}"
        raise DifflabError(f"⟨{name}⟩ must be {want}{f' ({why})' if why else ''}, got {value!r}.")
