"""Verdicts from stored numbers.

A reproduction measures each setting once per training seed and stores the numbers; a :class:`Claim` then compares
two settings A and B as the paper does ("B has the lower FD"): the effect is d = score(B) − score(A) per seed, its
95% Student-t interval over the seeds (:func:`difflab.metrics.intervals.seed_interval`: training and sampling noise
together), and :func:`difflab.metrics.intervals.verdict` turns that interval into "agrees", "disagrees" or "not
resolved at this scale" against the paper's direction, with a margin of ``MARGIN_FLOOR_SDS`` standard deviations of
the real-vs-real floor at the same N and feature extractor (so an effect smaller than the score's own noise is never
read as a result).

Each reproduction writes its claims, with every per-seed number, to ``<name>.json`` beside its report; the
verdicts printed in ``docs/results/`` are recomputed from those files (:func:`read_claims`), never typed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DifflabError
from ..metrics.intervals import seed_interval, verdict

SEEDS = (0, 1, 2)
MARGIN_FLOOR_SDS = 2.0


@dataclass(frozen=True)
class Claim:
    """"B beats A in ``metric``" as a paper states it. ``claimed`` is the sign the paper gives d = B − A
    ("negative" when B's score is lower, e.g. a lower FD or bits/dim; "positive" for accuracy or precision).
    ``a_values`` / ``b_values`` hold one number per training seed, in ``seeds`` order. ``floor`` and ``floor_sd``
    describe the real-vs-real floor at the same N and extractor (0 where none applies, e.g. bits/dim)."""

    text: str
    paper: str
    metric: str
    a: str
    b: str
    claimed: str
    a_values: tuple[float, ...]
    b_values: tuple[float, ...]
    seeds: tuple[int, ...]
    floor: float = 0.0
    floor_sd: float = 0.0
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.a_values) != len(self.b_values) or len(self.a_values) != len(self.seeds):
            raise DifflabError(f"claim {self.text!r}: {len(self.a_values)} values for A, {len(self.b_values)} for B "
                               f"and {len(self.seeds)} seeds; each setting needs one value per seed.")

    @property
    def margin(self) -> float:
        return MARGIN_FLOOR_SDS * self.floor_sd

    def effect(self) -> tuple[float, float, float]:
        """(mean, low, high) of d = B − A over the seeds."""
        return seed_interval([b - a for a, b in zip(self.a_values, self.b_values)])

    def verdict(self) -> str:
        _, lo, hi = self.effect()
        return verdict(lo, hi, self.claimed, self.margin)

    def as_dict(self) -> dict:
        mean, lo, hi = self.effect()
        return {**asdict(self), "effect": mean, "effect_low": lo, "effect_high": hi, "margin": self.margin,
                "verdict": self.verdict()}


def mean_sd(values) -> tuple[float, float]:
    v = list(values)
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / max(1, len(v) - 1))


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def claim_row(c: Claim, digits: int = 2) -> str:
    """One markdown row: the claim, A and B (mean ± sd over seeds), the effect with its interval, the margin, the
    verdict."""
    (am, asd), (bm, bsd) = mean_sd(c.a_values), mean_sd(c.b_values)
    mean, lo, hi = c.effect()
    return (f"| {c.text} | {c.a}: {_fmt(am, digits)} ± {_fmt(asd, digits)} | {c.b}: {_fmt(bm, digits)} ± {_fmt(bsd, digits)} "
            f"| {mean:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] | {_fmt(c.margin, digits)} | **{c.verdict()}** |")


def claim_table(claims: list[Claim], digits: int = 2) -> list[str]:
    """The verdict table of a report: one row per claim (:func:`claim_row`), and how to read it."""
    seeds = sorted({len(c.seeds) for c in claims})
    return ["| claim (paper's direction) | A (mean ± sd over seeds) | B | effect B − A, 95% interval over seeds | "
            "margin (2 floor sd) | verdict |", "|---|---|---|---|---|---|",
            *[claim_row(c, digits) for c in claims], "",
            f"Each value is one training seed's score ({' or '.join(map(str, seeds))} seeds). The verdict is "
            "`difflab.metrics.intervals.verdict` applied to the interval: *agrees* when the whole interval lies beyond "
            "the margin on the paper's side, *disagrees* when beyond it on the other side, otherwise *not resolved at "
            "this scale*."]


def write_claims(path: Path, name: str, command: str, claims: list[Claim], **info) -> Path:
    """Store ``claims`` with every per-seed number (and the verdicts they give) as JSON, atomically."""
    from ..io import write_text

    body = {"name": name, "command": command, **info, "claims": [c.as_dict() for c in claims]}
    write_text(path, json.dumps(body, indent=1, ensure_ascii=False) + "\n")
    return path


def read_claims(path: Path) -> tuple[dict, list[Claim]]:
    """(the file's other fields, its claims) from a :func:`write_claims` file; the verdicts are recomputed from
    the stored numbers, and a stored verdict that disagrees with the rule is an error."""
    from ..io import read_json_mapping

    body = read_json_mapping(path, "claims file")
    claims = []
    names = {f for f in Claim.__dataclass_fields__}
    for d in body.get("claims", []):
        c = Claim(**{k: (tuple(v) if k in ("a_values", "b_values", "seeds") else v) for k, v in d.items() if k in names})
        if "verdict" in d and d["verdict"] != c.verdict():
            raise DifflabError(f"{path}: the stored verdict {d['verdict']!r} of {c.text!r} is not what its numbers give "
                               f"({c.verdict()!r}); regenerate the file.")
        claims.append(c)
    return {k: v for k, v in body.items() if k != "claims"}, claims
