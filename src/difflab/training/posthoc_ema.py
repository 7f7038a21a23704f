"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", Sec. 3
and Appendix C): keep power-function averages of the weights during training, store snapshots of them, and after
training combine the snapshots into the average of any other length, so the EMA length is chosen by measurement
instead of before the run.

A power-function average θ̂_γ(t) = β_γ(t) θ̂_γ(t − 1) + (1 − β_γ(t)) θ(t) with β_γ(t) = (1 − 1/t)^(γ+1) weighs the
weights of step τ ≤ t by p_{t,γ}(τ) = (γ + 1) τ^γ / t^(γ+1); its length is stated as σ_rel, the standard deviation of
τ/t under that profile. A target profile is approximated by Σ_i w_i p_i over the stored snapshots (least squares in
L², Algorithm 3), and the same weights combine the snapshots' parameters.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DifflabError

#: σ_rel of the flattest power profile (γ → 0, a uniform average over the whole run); every σ_rel must lie below it
SIGMA_REL_MAX = 1 / (2 * math.sqrt(3))
DIR = "posthoc"
_NAME = re.compile(r"^sigma(?P<sigma>[0-9.]+)-(?P<step>\d{8})\.safetensors$")


def check_sigma_rel(sigma_rel, what: str = "σ_rel") -> float:
    """Refuse a σ_rel that no power-function profile has: it must lie in (0, 1/√12)."""
    if isinstance(sigma_rel, bool) or not isinstance(sigma_rel, (int, float)) or not 0 < sigma_rel < SIGMA_REL_MAX:
        raise DifflabError(f"⟨{what}⟩ must lie strictly between 0 and {SIGMA_REL_MAX:.4f} (a uniform average over the "
                           f"whole run), got {sigma_rel!r}.")
    return float(sigma_rel)


def sigma_rel_of_gamma(gamma: float) -> float:
    """σ_rel = (γ + 1)^(1/2) (γ + 2)^(−1) (γ + 3)^(−1/2): the standard deviation of τ/t under p_{t,γ} (Karras et al.
    2024, Eq. 3; τ/t ~ Beta(γ + 1, 1))."""
    return math.sqrt(gamma + 1) / ((gamma + 2) * math.sqrt(gamma + 3))


def gamma_of_sigma_rel(sigma_rel: float) -> float:
    """The exponent γ whose profile has length σ_rel: the largest real root of γ³ + 7γ² + (16 − σ_rel⁻²)γ +
    (12 − σ_rel⁻²) = 0, which is Eq. 3 squared and multiplied out (Karras et al. 2024, Algorithm 2)."""
    check_sigma_rel(sigma_rel)
    s = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def power_beta(t: int, gamma: float) -> float:
    """β_γ(t) = (1 − 1/t)^(γ+1), the decay of the power-function average at step t ≥ 1 (Karras et al. 2024, Eq. 2)."""
    return (1.0 - 1.0 / t) ** (gamma + 1.0)


def profile_dot(t_a, gamma_a, t_b, gamma_b):
    """⟨p_{t_a,γ_a}, p_{t_b,γ_b}⟩ = ∫ p_a(τ) p_b(τ) dτ = (γ_a + 1)(γ_b + 1) / ((γ_a + γ_b + 1) t_max) ·
    (t_min / t_max)^γ_max-side, where the exponent is that of the profile that runs longer (Appendix C.2);
    numpy-broadcast."""
    t_a, gamma_a, t_b, gamma_b = (np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    t_min, t_max = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
    exponent = np.where(t_a <= t_b, gamma_b, gamma_a)
    return (gamma_a + 1) * (gamma_b + 1) / ((gamma_a + gamma_b + 1) * t_max) * (t_min / t_max) ** exponent


def solve_weights(ts, gammas, t_r: float, gamma_r: float) -> np.ndarray:
    """The weights w minimising ‖Σ_i w_i p_{t_i,γ_i} − p_{t_r,γ_r}‖² in L² (Karras et al. 2024, Algorithm 3): the
    normal equations A w = b with A_ij = ⟨p_i, p_j⟩ and b_i = ⟨p_i, p_r⟩, solved by least squares in float64."""
    ts, gammas = np.asarray(ts, np.float64), np.asarray(gammas, np.float64)
    a = profile_dot(ts[:, None], gammas[:, None], ts[None, :], gammas[None, :])
    b = profile_dot(ts, gammas, t_r, gamma_r)
    return np.linalg.lstsq(a, b, rcond=None)[0]


class PowerEMA:
    """A power-function average of a model's parameters (buffers copied as they are), at length ``sigma_rel``."""

    def __init__(self, model: torch.nn.Module, sigma_rel: float):
        self.sigma_rel = check_sigma_rel(sigma_rel)
        self.gamma = gamma_of_sigma_rel(sigma_rel)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """θ̂ ← β_γ(step) θ̂ + (1 − β_γ(step)) θ after optimizer step ``step`` (1, 2, ...)."""
        weight = 1.0 - power_beta(step, self.gamma)
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), weight)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}{k}": v for k, v in self.model.state_dict().items()}

    def load(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        self.model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def snapshot_path(run_dir: Path, sigma_rel: float, step: int) -> Path:
    return Path(run_dir) / DIR / f"sigma{float(sigma_rel)!r}-{step:08d}.safetensors"


def write_snapshot(run_dir: Path, ema: PowerEMA, step: int) -> Path:
    """Store ``ema``'s weights at ``step`` (safetensors, written atomically)."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    path = snapshot_path(run_dir, ema.sigma_rel, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.model.state_dict().items()}, str(tmp),
                  metadata={"sigma_rel": repr(ema.sigma_rel), "step": str(step)})
    return path


def list_snapshots(run_dir: str | Path) -> list[tuple[float, int, Path]]:
    """The stored snapshots of a run as (σ_rel, step, path), by step then σ_rel."""
    found = []
    for path in sorted((Path(run_dir) / DIR).glob("sigma*-*.safetensors")):
        m = _NAME.match(path.name)
        if m:
            found.append((float(m["sigma"]), int(m["step"]), path))
    return sorted(found, key=lambda s: (s[1], s[0]))


def snapshot_table(run_dir: str | Path) -> str:
    """The run's snapshots as lines "step S: σ_rel a, b" (every step whose averages can be combined), or why none."""
    snaps = list_snapshots(run_dir)
    if not snaps:
        return f"{run_dir} holds no post-hoc EMA snapshots (train.posthoc_ema was not set)."
    by_step: dict[int, list[float]] = {}
    for sigma, step, _ in snaps:
        by_step.setdefault(step, []).append(sigma)
    return "\n".join(f"step {step}: σ_rel {', '.join(f'{s:g}' for s in sigmas)}" for step, sigmas in by_step.items())


def synthesize(run_dir: str | Path, sigma_rel: float, step: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights of the power-function average of length ``sigma_rel`` at ``step`` (default: the newest snapshot's),
    combined from the run's snapshots up to that step; returns (state dict, what was done: the step, γ, the
    snapshots used, their weights, and the relative L² error of the profile fit)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_sigma_rel(sigma_rel, "sigma_rel")
    snaps = list_snapshots(run_dir)
    if not snaps:
        raise DifflabError(f"{str(run_dir)!r} holds no post-hoc EMA snapshots; train it with train.posthoc_ema "
                           "set, e.g. [0.05, 0.1].")
    steps = sorted({s for _, s, _ in snaps})
    step = steps[-1] if step is None else step
    if step not in steps:
        raise DifflabError(f"{str(run_dir)!r} has no snapshot at step {step}; its snapshots are at steps "
                           f"{', '.join(map(str, steps[:8]))}{' ...' if len(steps) > 8 else ''}.")
    used = [s for s in snaps if s[1] <= step]
    ts = np.array([s for _, s, _ in used], np.float64)
    gammas = np.array([gamma_of_sigma_rel(sig) for sig, _, _ in used])
    gamma_r = gamma_of_sigma_rel(sigma_rel)
    w = solve_weights(ts, gammas, step, gamma_r)
    a = profile_dot(ts[:, None], gammas[:, None], ts[None, :], gammas[None, :])
    b = profile_dot(ts, gammas, step, gamma_r)
    rr = float(profile_dot(step, gamma_r, step, gamma_r))
    residual = max(float(w @ a @ w - 2 * w @ b + rr), 0.0)
    out: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for wi, (_, _, path) in zip(w, used):
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise DifflabError(f"post-hoc EMA snapshot {str(path)!r} is truncated or corrupt ({e}).") from None
        if out and tensors.keys() != out.keys():
            raise DifflabError(f"post-hoc EMA snapshot {str(path)!r} holds other tensors than the run's others.")
        for k, v in tensors.items():
            dtypes[k] = v.dtype
            if not v.is_floating_point():
                out[k] = v  # integer buffers are copied, as the EMA copies them
                continue
            acc = out.get(k)
            term = float(wi) * v.double()
            out[k] = term if acc is None else acc + term
    state = {k: v.to(dtypes[k]) for k, v in out.items()}
    info = {"step": step, "sigma_rel": sigma_rel, "gamma": gamma_r, "snapshots": [p.name for _, _, p in used],
            "weights": [float(x) for x in w], "profile_error": math.sqrt(residual / rr)}
    return state, info


__all__ = ["SIGMA_REL_MAX", "check_sigma_rel", "sigma_rel_of_gamma", "gamma_of_sigma_rel", "power_beta",
           "profile_dot", "solve_weights", "PowerEMA", "write_snapshot", "list_snapshots", "synthesize"]
