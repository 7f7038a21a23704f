"""Time steps tuned for one model, sampler and budget, training-free: a direct search of the visited times that
brings a few-step sampler's output closest to the many-step solution of the same probability-flow ODE from the
same noise (the "direct search against a reference trajectory" of the few-step issue; Align Your Steps, Sabour et
al. 2024, optimises a bound on the same discretisation error instead).

The S visited times are parametrised by their log-SNR gaps: with u ∈ R^S, λ_i = λ(t_max) + (λ(t_min) − λ(t_max))
Σ_{j≤i} w_j for i = 1..S−1, w = softmax(u) kept above a small floor (so the times stay ordered inside the schedule, t_0 = t_max, and u = 0 is the
``logsnr`` discretization). The objective is the mean squared distance, per sample, between the sampler's x̂_0 and
the reference ODE solution (Dormand–Prince at rtol 10⁻⁵) from ``num`` draws of x_T; it starts from the best fixed
discretization and runs Powell's derivative-free search (scipy). Tuned times are kept in the run directory
(``tuned_steps.json``), one entry per (sampler, NFE), and ``--discretization tuned`` reads them back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from . import samplers
from .errors import DifflabError
from .random import randn

FILE = "tuned_steps.json"
FIXED = ("trailing", "quadratic", "karras", "logsnr")
#: the smallest share of the log-SNR range between two visited times (so that they stay distinct)
MIN_GAP = 1e-3


class _Counting:
    """Counts the denoiser's calls (the NFE) of a sampler run."""

    def __init__(self, inner):
        self.inner, self.schedule, self.calls = inner, inner.schedule, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def steps_for_nfe(denoiser, sampler: str, nfe: int, shape) -> int:
    """The number of steps at which ``sampler`` makes exactly ``nfe`` network evaluations (counted on one sample);
    refuses a budget that no step count meets."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise DifflabError(f"⟨nfe⟩ must be a positive integer, got {nfe!r}.")
    info = samplers.info(sampler)
    if info["stochastic"]:
        raise DifflabError(f"sampler {sampler!r} draws fresh noise, so no single trajectory can be matched; tune the "
                           "steps of a deterministic one (ddim, euler, heun, dpm_solver, dpmpp_2m, dpmpp_3m, unipc, plms).")
    if sampler == "ode":
        raise DifflabError("the ode sampler chooses its own steps (adaptive); tune a fixed-step sampler.")
    seen = {}
    guess = max(info["min_steps"], round(nfe / info["nfe_per_step"]))
    for steps in sorted({max(info["min_steps"], guess + k) for k in range(-3, 4)}):
        counter = _Counting(denoiser)
        x_T = torch.zeros((1, *shape[1:]))
        samplers.sample(counter, x_T.shape, sampler=sampler, steps=steps, x_T=x_T)
        seen[steps] = counter.calls
        if counter.calls == nfe:
            return steps
    raise DifflabError(f"sampler {sampler!r} makes exactly {nfe} network evaluations at no step count near {guess} "
                       f"(steps → NFE: {', '.join(f'{s}→{n}' for s, n in seen.items())}); ask for one of those NFE.")


def _times(schedule, u: torch.Tensor) -> torch.Tensor:
    lam_lo = float(schedule.lambda_(torch.tensor(float(schedule.t_max), dtype=torch.float64)))
    lam_hi = float(schedule.lambda_(torch.tensor(float(schedule.t_min), dtype=torch.float64)))
    weights = (torch.softmax(u, 0) + MIN_GAP) / (1.0 + MIN_GAP * u.numel())  # every gap at least MIN_GAP/(1 + S·MIN_GAP)
    frac = torch.cumsum(weights, 0)[:-1]
    lam = lam_lo + (lam_hi - lam_lo) * frac
    ts = torch.cat([torch.tensor([float(schedule.t_max)], dtype=torch.float64), schedule.t_from_lambda(lam)])
    return ts


def _params(schedule, times: torch.Tensor) -> torch.Tensor:
    """The u of :func:`_times` for given times (log of their log-SNR gaps, the last gap down to t_min)."""
    lam = schedule.lambda_(times.double().clamp(float(schedule.t_min), float(schedule.t_max)))
    lam_end = schedule.lambda_(torch.tensor(float(schedule.t_min), dtype=torch.float64))
    gaps = torch.diff(torch.cat([lam, lam_end.reshape(1)])).clamp(min=1e-6)
    return torch.log(gaps)


@dataclass
class TunedSteps:
    """Times tuned for (sampler, nfe): the visited ``times``, and the held-out error (mean squared distance per
    sample to the reference) of each fixed discretization and of the tuned times."""

    sampler: str
    nfe: int
    steps: int
    times: list[float]
    errors: dict[str, float]

    def to_json(self) -> dict:
        return {"sampler": self.sampler, "nfe": self.nfe, "steps": self.steps, "times": self.times,
                "held_out_error": self.errors}


def reference(denoiser, x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's solution from ``x_T`` by adaptive Dormand–Prince (rtol = atol = 10⁻⁵)."""
    return samplers.sample(denoiser, x_T.shape, sampler="ode", steps=1, x_T=x_T)


def _error(denoiser, sampler, steps, x_T, ref, **where) -> float:
    x = samplers.sample(denoiser, x_T.shape, sampler=sampler, steps=steps, x_T=x_T, **where)
    return float((x.double() - ref.double()).pow(2).flatten(1).sum(1).mean())


def tune(denoiser, shape, sampler: str, nfe: int, num: int = 256, seed: int = 0, max_evaluations: int = 400,
         progress: bool = False) -> TunedSteps:
    """Tune the times of ``sampler`` at ``nfe`` network evaluations for ``denoiser`` on samples of ``shape`` (one
    example's shape); ``num`` draws of x_T from ``seed`` to tune on and ``num`` others (seed + 1) to report on."""
    from scipy.optimize import minimize

    shape = tuple(shape)
    steps = steps_for_nfe(denoiser, sampler, nfe, (1, *shape))
    schedule = denoiser.schedule
    std = samplers.prior_std(schedule)
    tune_x = randn((num, *shape), torch.Generator().manual_seed(seed)) * std
    test_x = randn((num, *shape), torch.Generator().manual_seed(seed + 1)) * std
    tune_ref, test_ref = reference(denoiser, tune_x), reference(denoiser, test_x)
    errors = {name: _error(denoiser, sampler, steps, tune_x, tune_ref, discretization=name) for name in FIXED}
    start = min(errors, key=errors.get)
    if steps == 1:
        times = samplers.discretize(schedule, 1, start).double()
    else:
        u0 = _params(schedule, samplers.discretize(schedule, steps, start).double())
        bar = None
        if progress:
            from .progress import progress_bar
            bar = progress_bar(total=max_evaluations, desc=f"tune-steps {sampler} @ {nfe} NFE", unit="eval")

        def objective(u):
            if bar is not None:
                bar.update(1)
            value = _error(denoiser, sampler, steps, tune_x, tune_ref, timesteps=_times(schedule, torch.as_tensor(u)))
            return value if math.isfinite(value) else 1e30

        best = minimize(objective, u0.numpy(), method="Powell", options={"maxfev": max_evaluations, "xtol": 1e-3})
        if bar is not None:
            bar.close()
        times = _times(schedule, torch.as_tensor(best.x))
        if best.fun > errors[start]:  # the search never leaves its start worse off
            times = samplers.discretize(schedule, steps, start).double()
    held_out = {name: _error(denoiser, sampler, steps, test_x, test_ref, discretization=name) for name in FIXED}
    held_out["tuned"] = _error(denoiser, sampler, steps, test_x, test_ref, timesteps=times)
    return TunedSteps(sampler, nfe, steps, [float(t) for t in times], held_out)


def save(run_dir: str | Path, tuned: TunedSteps) -> Path:
    """Add (or replace) the entry for (sampler, nfe) in ``run_dir/tuned_steps.json`` (written atomically)."""
    from .io import write_json

    path = Path(run_dir) / FILE
    entries = [e for e in _read(path) if (e["sampler"], e["nfe"]) != (tuned.sampler, tuned.nfe)]
    write_json(path, {"entries": entries + [tuned.to_json()]})
    return path


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        assert all({"sampler", "nfe", "steps", "times"} <= set(e) for e in entries)
        return entries
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
        raise DifflabError(f"tuned steps file {str(path)!r} is corrupt; delete it and run difflab tune-steps again.") from None


def load(run_dir: str | Path, sampler: str, steps: int) -> list[float]:
    """The tuned times of ``sampler`` at ``steps`` steps from the run's ``tuned_steps.json``; names what was tuned
    when nothing fits."""
    entries = _read(Path(run_dir) / FILE)
    for e in entries:
        if e["sampler"] == sampler and e["steps"] == steps:
            return e["times"]
    have = ", ".join(f"{e['sampler']} at {e['nfe']} NFE ({e['steps']} steps)" for e in entries) or "none"
    raise DifflabError(f"no tuned steps for sampler {sampler!r} at {steps} steps in {str(run_dir)!r} (tuned: {have}); "
                       f"run difflab tune-steps {run_dir} --sampler {sampler} --nfe N first.")
