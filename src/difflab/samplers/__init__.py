"""Samplers: pure functions ``(denoiser, x_T, timesteps, generator, ...) -> x_0``, one family per
file, each mirroring its paper's algorithm. A registry maps names to samplers so the CLI and the
benchmarks enumerate them instead of hard-coding lists.

Every sampler has the signature ``fn(denoiser, x_T, timesteps, generator=None, callback=None,
progress=False, **options)``; ``timesteps`` is the decreasing sequence of times a discretization
chose (integers in 1..T, or fractional times, or t in (0, 1] for SDEs) and the last step goes to
t = 0, the data. Samplers read α_t, σ_t, λ_t from ``denoiser.schedule`` and call
``denoiser(x, t)`` with a scalar t; they run under ``torch.no_grad``. ``callback(i, t, x_t, prediction)`` is called at every step (for pictures of
generation as it happens).
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterator, Sequence

import torch

from ..errors import DifflabError
from ..random import GeneratorLike, randn
from .discretizations import discretize, spaced_timesteps

_REGISTRY: dict[str, Callable] = {}
_INFO: dict[str, dict] = {}
_BASE_ARGS = {"denoiser", "x_T", "timesteps", "generator", "callback", "progress"}
_NOT_SAMPLERS = {"discretizations"}
_loaded = False


def register(name: str, order: int = 1, stochastic: bool = False, nfe_per_step: float = 1, min_steps: int = 1,
             mean_shift: bool = False, steppable: bool = False, eps_is_noise: bool = False,
             from_zero_snr: bool = False, open_end: bool = False, only_for: str | None = None):
    """Register the decorated function as the sampler ``name``, with what ``difflab samplers`` lists:
    its order of accuracy, whether it draws fresh noise, network evaluations per step, and the fewest
    steps it accepts; and what the editing tasks may rely on: ``mean_shift``, whether its steps add a
    denoiser's ``mean_shift`` (classifier guidance in the form of Dhariwal & Nichol 2021, Algorithm 1) to their
    mean; ``steppable``, whether each step t → s evaluates the denoiser once, at t and the current x_t, so a run
    may stop at any visited time (RePaint's descents); ``eps_is_noise``, whether its step takes ε̂ as the noise
    of x_s alone rather than as a function of x_t (so a measurement may hand it fresh noise); ``from_zero_snr``,
    whether its first step is finite from pure noise, α_T = 0 (zero terminal SNR; the others start with one DDIM
    step, :func:`sample`); ``open_end``, whether its last step reads x̂_0 off its last visited time, so the visited times
    are the discretization's for one step more without its last, t_min (a consistency model's f(x, t_min) = x);
    ``only_for``, the one parameterization whose models it samples (others are refused in one sentence)."""
    def wrap(fn):
        _REGISTRY[name] = fn
        import sys

        module_doc = (sys.modules[fn.__module__].__doc__ or "").strip()
        _INFO[name] = {"order": order, "stochastic": stochastic, "nfe_per_step": nfe_per_step, "min_steps": min_steps,
                       "mean_shift": mean_shift, "steppable": steppable, "eps_is_noise": eps_is_noise,
                       "from_zero_snr": from_zero_snr, "open_end": open_end, "only_for": only_for,
                       "summary": module_doc.splitlines()[0].rstrip(".") if module_doc else ""}
        return fn
    return wrap


def _load_all() -> None:
    """Import every module of this package once: each registers its samplers (one family per file)."""
    import importlib
    import pkgutil

    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_SAMPLERS and not module.name.startswith("_"):
            importlib.import_module(f".{module.name}", __name__)
    _loaded = True


def info(name: str) -> dict:
    """Order, stochasticity, NFE per step, fewest steps and a one-line summary of a sampler."""
    get(name)
    return dict(_INFO[name])


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def for_models(parameterization: str | None) -> list[str]:
    """The samplers that sample a model of ``parameterization``: every one but those made for another kind of
    model (``only_for``)."""
    _load_all()
    return [n for n in names() if _INFO[n]["only_for"] in (None, parameterization)]


def get(name: str) -> Callable:
    _load_all()
    if name not in _REGISTRY:
        raise DifflabError(f"unknown sampler {name!r}; expected one of {', '.join(names())}.")
    return _REGISTRY[name]


def options(name: str) -> dict[str, object]:
    """The sampler-specific options of ``name`` and their defaults."""
    params = inspect.signature(get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _BASE_ARGS}


def check_denoiser(name: str, denoiser) -> None:
    """Refuse a denoiser whose guidance the sampler ``name`` would silently drop: classifier guidance in the form
    of Dhariwal & Nichol 2021, Algorithm 1 (:class:`~difflab.guidance.AncestralClassifierGuidance`) leaves the
    predictions alone and shifts the mean of each ancestral step, which only a sampler registered with
    ``mean_shift`` does, and only when the guided denoiser is the one it is given (not wrapped in another). Refuse a
    model another parameterization than a sampler's ``only_for`` (a denoiser that names none, such as an exact
    oracle, is taken at its word)."""
    get(name)
    only, inner = _INFO[name]["only_for"], denoiser
    while only is not None and inner is not None:
        kind = getattr(inner, "parameterization", None)
        if kind is not None and kind != only:
            others = ", ".join(n for n in names() if _INFO[n]["only_for"] is None and not _INFO[n]["stochastic"])
            raise DifflabError(f"the {name!r} sampler reads each x̂_0 as the end of an ODE trajectory, which only a "
                               f"{only} model predicts; this model predicts {kind!r}: sample it with {others}.")
        inner = getattr(inner, "inner", None)
    inner = denoiser
    while inner is not None:
        if callable(getattr(inner, "mean_shift", None)):
            if inner is denoiser and _INFO[name]["mean_shift"]:
                return
            where = "inside another denoiser, which hides it" if inner is not denoiser else f"by the {name!r} sampler"
            ok = ", ".join(n for n in names() if _INFO[n]["mean_shift"])
            raise DifflabError(f"classifier guidance in its ancestral form (Algorithm 1) would be ignored {where}; "
                               f"sample it directly with {ok}, or use ClassifierGuidance (the ε̂ form, Algorithm 2), "
                               "which every sampler applies.")
        inner = getattr(inner, "inner", None)


def with_capability(capability: str) -> list[str]:
    """The samplers registered with ``capability`` (``mean_shift``, ``steppable``, ``eps_is_noise`` or
    ``from_zero_snr``) set."""
    return [n for n in names() if _INFO[n][capability]]


def check_batch_fits(batch: int, shape: Sequence[int]) -> None:
    """Refuse, before sampling, a batch whose rough working memory exceeds what the machine has available: about 32
    float copies of a sample (state, predictions, a network's activations) and one generator per sample."""
    import math

    from ..io import available_memory

    need = batch * (math.prod(shape) * 4 * 32 + 4096)
    have = available_memory()
    if have is not None and need > have:
        raise DifflabError(f"⟨batch_size⟩ {batch} needs about {need / 2**30:.1f} GiB while {have / 2**30:.1f} GiB are "
                           f"available; use a ⟨batch_size⟩ of at most {max(1, batch * have // need)}.")


def step_pairs(timesteps: Sequence, progress: bool = False, desc: str = "sampling") -> Iterator[tuple[int, object, object]]:
    """Yield (i, t, s): step i goes from time t to s, the next visited one (0, the data, after the last).
    Integer timesteps stay ints; fractional ones are floats."""
    ts = [t.item() if hasattr(t, "item") else t for t in timesteps]
    nxt = ts[1:] + [0]
    pairs = list(zip(ts, nxt))
    if progress:
        from ..progress import progress_bar
        pairs = progress_bar(pairs, desc=desc, leave=False, unit="step")
    for i, (t, s) in enumerate(pairs):
        yield i, t, s


def prior_std(schedule) -> float:
    """Standard deviation of the noise sampling starts from: σ at t_max (1 for VP, σ_max for VE)."""
    return float(schedule.sigma(torch.tensor(schedule.t_max, dtype=torch.float64)))


def sample(denoiser, shape: Sequence[int], sampler: str = "ddim", steps: int = 50, generator: GeneratorLike = None,
           x_T: torch.Tensor | None = None, discretization: str | None = None, device=None, callback=None,
           progress: bool = False, timesteps: Sequence | None = None, gaussian=None,
           gaussian_start: float | None = None, **sampler_options) -> torch.Tensor:
    """Draw samples of ``shape`` from any denoiser, in the denoiser's (model) coordinates.

    ``generator`` is one ``torch.Generator`` or a list of them, one per sample (then sample i
    depends on generator i alone). ``x_T`` starts from given noise instead of drawing it.
    ``discretization`` names the times visited (see :mod:`difflab.samplers.discretizations`); by
    default ``trailing`` for discrete schedules and ``logsnr`` for continuous ones, where steps uniform
    in t leave one huge log-SNR jump at the end that the high-order solvers do not survive. ``timesteps`` gives the
    ``steps`` visited times themselves instead (decreasing, from the schedule's t_max; e.g. tuned ones,
    :mod:`difflab.tuning`).

    On a schedule with zero terminal SNR (ᾱ_T = 0; Lin et al. 2024) a sampler whose steps divide by α_t or step in
    λ_t = −∞ starts with one DDIM step from t = T, where x̂_0 is the network's and ε̂ = x_T (Lin et al. 2024,
    Sec. 3.3), and runs its own steps from the next visited time: ``steps`` network evaluations in all.

    ``gaussian`` (a :class:`~difflab.data_gaussian.DataGaussian` of the data) with ``gaussian_start`` = σ̃ carries the
    noise from t_max down to the time where σ/α = σ̃ with the Gaussian's exact probability-flow map, at no network
    evaluation ("analytical teleportation", Wang & Vastola 2024), and the sampler's ``steps`` run from there (the
    discretization's rule over the shorter interval; given ``timesteps`` then start at that time).
    """
    fn = get(sampler)
    check_denoiser(sampler, denoiser)
    allowed = options(sampler)
    for key in sampler_options:
        if key not in allowed:
            raise DifflabError(f"sampler {sampler!r} has no option {key!r}; its options are {', '.join(allowed) or 'none'}.")
    schedule = denoiser.schedule
    t_start = gaussian_start_time(schedule, gaussian, gaussian_start)
    if timesteps is not None:
        if discretization is not None:
            raise DifflabError("give either a discretization or the timesteps themselves, not both.")
        timesteps = check_timesteps(schedule, timesteps, steps, t_start)
    else:
        if discretization is None:
            discretization = "trailing" if schedule.discrete else "logsnr"
        if _INFO[sampler]["open_end"]:  # the times of one step more, without t_min, where nothing is left to do
            timesteps = discretize(schedule, steps + 1, discretization, t_start=t_start)[:-1]
        else:
            timesteps = discretize(schedule, steps, discretization, t_start=t_start)
    if steps < _INFO[sampler]["min_steps"]:
        raise DifflabError(f"sampler {sampler!r} needs at least {_INFO[sampler]['min_steps']} steps, got {steps}.")
    shape = tuple(shape)
    if x_T is None:
        x_T = randn(shape, generator, device) * prior_std(schedule)
    elif tuple(x_T.shape) != shape:
        raise DifflabError(f"x_T has shape {tuple(x_T.shape)} but samples of shape {shape} were asked for.")
    if t_start is not None:  # the data Gaussian's exact flow from t_max down to t_start, no network evaluation
        from ._kernels import alpha_sigma, as_time

        x_T = gaussian.flow(x_T, alpha_sigma(schedule, as_time(schedule.t_max)), alpha_sigma(schedule, as_time(t_start)))
    with torch.no_grad():
        if getattr(schedule, "zero_terminal_snr", False) and not _INFO[sampler]["from_zero_snr"] \
                and float(timesteps[0]) == schedule.T and t_start is None:
            x_T, timesteps, callback = _step_from_zero_snr(sampler, denoiser, x_T, timesteps, callback)
            if timesteps is None:
                return x_T
        return fn(denoiser, x_T, timesteps, generator=generator, callback=callback, progress=progress, **sampler_options)


def gaussian_start_time(schedule, gaussian, sigma) -> float | None:
    """The time where σ_t/α_t = ``sigma``, below which a data Gaussian hands the noise to the sampler; None without
    ``sigma``, or where the schedule's noisiest σ̃ does not exceed it (nothing to carry)."""
    import math

    if sigma is None:
        if gaussian is not None:
            raise DifflabError("a data Gaussian was given without gaussian_start, the noise level σ̃ = σ/α where the "
                               "network takes over.")
        return None
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise DifflabError(f"gaussian_start is a noise level σ̃ = σ/α > 0, got {sigma!r}.")
    if gaussian is None:
        raise DifflabError("gaussian_start needs the data's Gaussian (difflab.data_gaussian.DataGaussian; a run keeps "
                           "it in gaussian.safetensors).")
    lam_max = float(schedule.lambda_(torch.tensor(float(schedule.t_max), dtype=torch.float64)))
    if -lam_max / 2 <= math.log(sigma):  # σ̃(t_max) <= sigma: the sampler starts below it anyway
        return None
    return float(schedule.t_from_lambda(torch.tensor(-2 * math.log(sigma), dtype=torch.float64)))


def check_timesteps(schedule, timesteps: Sequence, steps: int, t_start: float | None = None) -> torch.Tensor:
    """Given visited times as a float64 tensor: ``steps`` of them, strictly decreasing, the first the schedule's t_max
    (or ``t_start``), all within [t_min, t_max]."""
    ts = torch.as_tensor([float(t) for t in timesteps], dtype=torch.float64)
    t_max, t_min = float(schedule.t_max if t_start is None else t_start), float(schedule.t_min)
    if ts.ndim != 1 or len(ts) != steps:
        raise DifflabError(f"{len(ts)} timesteps were given for {steps} steps; give one per step.")
    if not (torch.all(ts[1:] < ts[:-1]) and abs(float(ts[0]) - t_max) < 1e-9 and float(ts[-1]) >= t_min - 1e-9):
        raise DifflabError(f"timesteps must decrease strictly from t_max = {t_max:g} and stay >= t_min = {t_min:g}, "
                           f"got {[round(float(t), 4) for t in ts]}.")
    ts[0] = t_max
    return ts


def _step_from_zero_snr(sampler: str, denoiser, x_T: torch.Tensor, timesteps, callback):
    """One DDIM step from t = T with ᾱ_T = 0 to the next visited time (to the data if there is none): (x there,
    the remaining times or None, the callback with its step index moved on by one)."""
    from ._kernels import ddim_step

    schedule = denoiser.schedule
    rest = timesteps[1:]
    if 0 < len(rest) < _INFO[sampler]["min_steps"]:
        raise DifflabError(f"with zero terminal SNR the first step is DDIM's, so sampler {sampler!r} needs at least "
                           f"{_INFO[sampler]['min_steps'] + 1} ⟨steps⟩, got {len(timesteps)}.")
    t = timesteps[0]
    t = t.item() if hasattr(t, "item") else t
    pred = denoiser(x_T, t)
    if callback is not None:
        callback(0, t, x_T, pred)
    s = rest[0].item() if len(rest) else 0
    s64 = torch.as_tensor(s, dtype=torch.float64 if isinstance(s, float) else torch.long)
    x = ddim_step(pred.x0, pred.eps, float(schedule.alpha(s64)), float(schedule.sigma(s64)))
    if not len(rest):
        return pred.x0, None, callback
    moved = None if callback is None else (lambda i, *args: callback(i + 1, *args))
    return x, rest, moved


__all__ = ["register", "with_capability", "check_timesteps", "check_batch_fits", "names", "get", "info", "options", "check_denoiser", "sample", "discretize", "spaced_timesteps", "step_pairs", "prior_std"]
