"""Predictor-corrector sampling of the reverse SDE (Song et al. 2021) and annealed Langevin dynamics (Song & Ermon 2019).

Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential Equations", Sec. 4.2,
Algorithm 1 and Appx. E and G; Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the
Data Distribution", Algorithm 1.

Both read the score from the denoiser, ∇log p_t(x) = −ε̂/σ_t, and the forward SDE dx = f(t) x dt + g(t) dw
from :func:`difflab.sde.sde_coefficients` (through :func:`~difflab.samplers._kernels.sde_terms`), so they run
on the discrete VP schedules (t in timesteps), VP, sub-VP and VE alike. Both finish with the denoised
x̂_0 at the last visited time (the final denoising step of Song et al. 2021, Appx. G, which NCSNv2, Song &
Ermon 2020, and Jolicoeur-Martineau et al. 2021 also recommend for annealed Langevin dynamics).
"""

from __future__ import annotations

import torch

from ..errors import DifflabError
from ..process import transition_variance
from ..random import randn
from . import register, step_pairs
from ._kernels import sde_terms

Tensor = torch.Tensor
PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def _coefs(schedule, t) -> tuple[float, float]:
    tt = torch.tensor(float(t), dtype=torch.float64)
    return float(schedule.alpha(tt)), float(schedule.sigma(tt))


def _check_positive_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DifflabError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DifflabError(f"{name} must be a number > 0, got {value!r}.")


def reverse_diffusion_step(schedule, x: Tensor, score: Tensor, t, s, z: Tensor) -> Tensor:
    """Reverse-diffusion predictor (Song et al. 2021, Appx. E): with the forward discretization
    x_t = x_s + F x_s + G z, F = α_t/α_s − 1 and G² = σ²_{t|s} = σ_t² − (α_t/α_s)² σ_s² (exact for the
    schedule's marginals), the step t → s is x_s = x_t − F x_t + G² ∇log p_t(x_t) + G z.
    For the full discrete VP schedule this is (2 − √(1 − β_i)) x + β_i s + √β_i z (Algorithm 3); for VE
    it is x + (σ_t² − σ_s²) s + √(σ_t² − σ_s²) z (Algorithm 2)."""
    a_t, s_t = _coefs(schedule, t)
    a_s, s_s = _coefs(schedule, s)
    big_f = a_t / a_s - 1.0
    g2 = float(transition_variance(torch.tensor(a_t), torch.tensor(s_t), torch.tensor(a_s), torch.tensor(s_s)))
    return x - big_f * x + g2 * score + g2**0.5 * z


def euler_maruyama_step(schedule, x: Tensor, score: Tensor, t, s, z: Tensor) -> Tensor:
    """Euler–Maruyama step t → s (s < t) of the reverse SDE dx = [f(t) x − g²(t) ∇log p_t(x)] dt + g(t) dw̄
    (Song et al. 2021, Eq. 6): x_s = x_t − [f x_t − g² ∇log p_t(x_t)](t − s) + g √(t − s) z."""
    f, g2, _ = sde_terms(schedule, t)
    h = float(t) - float(s)
    return x - (f * x - g2 * score) * h + (g2 * h) ** 0.5 * z


def langevin_corrector_step(x: Tensor, score: Tensor, z: Tensor, snr: float, a: float = 1.0) -> Tensor:
    """One Langevin corrector step (Song et al. 2021, Algorithms 4 and 5): ε = 2a (r ‖z‖/‖∇log p‖)² with the
    target signal-to-noise ratio r = ``snr``, then x ← x + ε ∇log p_t(x) + √(2ε) z. ``a`` is 1 for VE and
    α_i = 1 − β_i for VP (here (α_t/α_s)² over the current step). The norms are per-sample norms averaged
    over the batch, as in the authors' code, so ε is one number for the batch (well defined even in
    one dimension, where a single sample's ‖∇log p‖ can vanish)."""
    dims = tuple(range(1, x.ndim))
    z_norm = z.pow(2).sum(dims).sqrt().mean()
    g_norm = score.pow(2).sum(dims).sqrt().mean()
    eps = 2.0 * a * (snr * z_norm / g_norm.clamp_min(torch.finfo(g_norm.dtype).tiny)) ** 2
    return x + eps * score + (2.0 * eps).sqrt() * z


@register("pc", order=1, stochastic=True, nfe_per_step=2, from_zero_snr=True)
def pc(denoiser, x_T: Tensor, timesteps, generator=None, callback=None, progress: bool = False,
       predictor: str = "reverse_diffusion", snr: float = 0.16, corrector_steps: int = 1) -> Tensor:
    """Predictor-corrector sampling of the reverse SDE (Song et al. 2021, Algorithm 1; Algorithms 2–5).

    At every visited time t: ``corrector_steps`` Langevin steps at t with target signal-to-noise ratio
    ``snr`` (Algorithms 4/5), then one ``predictor`` step t → s, ``reverse_diffusion`` (Appx. E) or
    ``euler_maruyama`` of the reverse SDE (Eq. 6). This is Algorithm 1 with its loop rotated as in the
    authors' code, so the first visited time is corrected too; the last step (to t = 0, the data) is
    the denoised x̂_0 instead of a predictor step. N steps cost N (1 + corrector_steps) evaluations
    (the registry's ``nfe_per_step`` is for the default ``corrector_steps`` = 1). The corrector's step
    size is one number for the batch (norms averaged over it, as in the authors' code), so with
    per-sample generators a sample still depends on its batch through that number.
    """
    if predictor not in PREDICTORS:
        raise DifflabError(f"unknown pc predictor {predictor!r}; expected one of {', '.join(PREDICTORS)}.")
    _check_positive("pc snr", snr)
    _check_positive_int("pc corrector_steps", corrector_steps, 0)
    step = reverse_diffusion_step if predictor == "reverse_diffusion" else euler_maruyama_step
    schedule = denoiser.schedule
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "pc"):
        a_t, s_t = _coefs(schedule, t)
        a_s, _ = _coefs(schedule, s)
        for _ in range(corrector_steps):
            score = -denoiser(x, t).eps / s_t
            x = langevin_corrector_step(x, score, randn(x.shape, generator, x.device, x.dtype), snr, (a_t / a_s) ** 2)
        pred = denoiser(x, t)
        if s > 0:
            x_next = step(schedule, x, -pred.eps / s_t, t, s, randn(x.shape, generator, x.device, x.dtype))
        else:
            x_next = pred.x0
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x


def langevin_gaussian_moments(schedule, timesteps, mean: float, std: float, x_T_mean: float = 0.0,
                              x_T_std: float = 1.0, step_lr: float | None = None, n_steps_each: int = 5
                              ) -> tuple[float, float]:
    """The exact mean and standard deviation that :func:`langevin` ends with on 1-D data N(``mean``, ``std``²) given
    the exact score, from x_T ~ N(``x_T_mean``, ``x_T_std``²): at level σ̃_i the target is N(m, v_i), v_i = s² + σ̃_i²,
    and the step x̃ ← x̃ + (α_i/2)(m − x̃)/v_i + √α_i z is linear-Gaussian, so with c_i = 1 − α_i/(2 v_i) the mean
    error scales by c_i and the variance maps V ← c_i² V + α_i; the final x̂_0 = m + s²/v_L (x̃ − m) (Tweedie). The
    same step rule as :func:`langevin` (α_i = ε σ̃_i²/σ̃_L², ε = ``step_lr`` or its default)."""
    ts = [t.item() if hasattr(t, "item") else t for t in timesteps]
    levels = [s_t / a_t for a_t, s_t in (_coefs(schedule, t) for t in ts)]
    sigma_l2 = levels[-1] ** 2
    eps = 2e-5 * sigma_l2 / 0.01**2 if step_lr is None else step_lr
    a_first, _ = _coefs(schedule, ts[0])
    m_err, var = x_T_mean / a_first - mean, (x_T_std / a_first) ** 2
    for sig in levels:
        v, alpha = std**2 + sig**2, eps * sig**2 / sigma_l2
        c = 1.0 - alpha / (2.0 * v)
        m_err *= c**n_steps_each
        for _ in range(n_steps_each):
            var = c * c * var + alpha
    gain = std**2 / (std**2 + sigma_l2)
    return mean + gain * m_err, gain * var**0.5


def annealed_langevin_level(denoiser, x_tilde: Tensor, t, a_t: float, s_t: float, step: float, n_steps: int,
                            generator) -> tuple[Tensor, object]:
    """n_steps of x̃ ← x̃ + (α_i/2) s(x̃, σ_i) + √α_i z at one noise level (Song & Ermon 2019, Algorithm 1,
    lines 4–6), in the coordinates x̃ = x/α_t where x̃ = x_0 + σ̃ ε has noise level σ̃ = σ_t/α_t; the score
    of x̃ is α_t ∇log p_t(α_t x̃) = −ε̂/σ̃. Returns x̃ and the first prediction (for the callback)."""
    first = None
    sigma_tilde = s_t / a_t
    for _ in range(n_steps):
        pred = denoiser(a_t * x_tilde, t)
        first = pred if first is None else first
        score = -pred.eps / sigma_tilde
        z = randn(x_tilde.shape, generator, x_tilde.device, x_tilde.dtype)
        x_tilde = x_tilde + (0.5 * step) * score + step**0.5 * z
    return x_tilde, first


@register("langevin", order=1, stochastic=True, nfe_per_step=5)
def langevin(denoiser, x_T: Tensor, timesteps, generator=None, callback=None, progress: bool = False,
             step_lr: float | None = None, n_steps_each: int = 5) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), then the denoised x̂_0.

    The noise levels are σ_i = σ̃_t = σ_t/α_t of the visited times, largest first; level i runs
    ``n_steps_each`` (the paper's T) Langevin steps of size α_i = ε σ_i²/σ_L² with ε = ``step_lr`` and σ_L
    the smallest level. By default ε = 2·10⁻⁵ (σ_L/0.01)², NCSN's ε for its σ_L = 0.01 (Song & Ermon
    2019, Sec. 5) carried over to this schedule's smallest level, so that α_i/σ_i² = ε/σ_L² = 0.2 on
    every schedule (the chain diverges once that ratio nears 4). The chain lives in x̃ = x/α_t (x̃ = x
    for VE), where every schedule is variance exploding with noise σ̃ and score −ε̂/σ̃; for VP schedules
    the denoiser is called at x = α_t x̃. The last step returns x̂_0 at the smallest level (the final
    denoising of NCSNv2, Song & Ermon 2020). N steps cost N·n_steps_each + 1 evaluations.

    The chain lags behind its shrinking target unless levels × steps are plentiful around the data's
    scale: on N(m, 0.5²) data, 50 levels spaced evenly in log-SNR (``discretization="logsnr"``) with 20
    steps each and ε = σ_L² end within 2.5% of the variance; time-uniform levels of VP schedules spend
    most steps at noise levels far above the data's scale. :func:`langevin_gaussian_moments` gives the exact
    mean and standard deviation it ends with on Gaussian data, so the regime can be read off before sampling: a
    level's step shrinks as σ_i² while the target's variance stays near the data's s², so the chain stops
    contracting once σ_i falls well below s (Π_i (1 − α_i/(2(s² + σ_i²)))^(2·n_steps_each) must be small over the
    levels below s). With 200 time-uniform levels of the linear VP schedule, 5 steps each, on N(0.7, 0.4²) it
    ends with standard deviation 0.448 (11% too wide) however many samples are drawn; 20 steps per level give 0.417.
    """
    if step_lr is not None:
        _check_positive("langevin step_lr", step_lr)
    _check_positive_int("langevin n_steps_each", n_steps_each, 1)
    schedule = denoiser.schedule
    ts = [t.item() if hasattr(t, "item") else t for t in timesteps]
    a_last, s_last = _coefs(schedule, ts[-1])
    sigma_l2 = (s_last / a_last) ** 2
    step_lr = 2e-5 * sigma_l2 / 0.01**2 if step_lr is None else step_lr
    a_first, _ = _coefs(schedule, ts[0])
    x_tilde = x_T / a_first
    for i, t, s in step_pairs(timesteps, progress, "langevin"):
        a_t, s_t = _coefs(schedule, t)
        step = step_lr * (s_t / a_t) ** 2 / sigma_l2
        x_start = a_t * x_tilde
        x_tilde, pred = annealed_langevin_level(denoiser, x_tilde, t, a_t, s_t, step, n_steps_each, generator)
        if callback is not None:
            callback(i, t, x_start, pred)
        if s == 0:
            return denoiser(a_t * x_tilde, t).x0
    return a_t * x_tilde  # not reached: the last pair always goes to s = 0
