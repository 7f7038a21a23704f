"""The data's Gaussian: the training images' mean and covariance, its exact denoiser and its closed-form
probability-flow map ("analytical teleportation", Wang & Vastola 2024, "The Unreasonable Effectiveness of Gaussian
Score Approximation for Diffusion Models and its Applications", TMLR).

At high noise the denoiser of any bounded data set approaches that of the Gaussian N(μ, Σ) with the data's mean and
covariance (Wang & Vastola 2024, Sec. 3), and for a Gaussian everything is closed-form. With Σ = U Λ Uᵀ and
x_t = α_t x_0 + σ_t ε, x_t ~ N(α_t μ, α_t² Σ + σ_t² I), and

* the posterior mean (:meth:`DataGaussian.posterior_mean`) is E[x_0 | x_t] = μ + U diag(α λ_k / (α² λ_k + σ²)) Uᵀ
  (x_t − α μ);
* the probability-flow ODE keeps each standardised coordinate z_k = u_kᵀ (x_t − α_t μ) / √(α_t² λ_k + σ_t²)
  constant, so it carries x from time t to time s in one step (:meth:`DataGaussian.flow`):
  x_s = α_s μ + U diag(√((α_s² λ_k + σ_s²) / (α_t² λ_k + σ_t²))) Uᵀ (x_t − α_t μ).

A network trained briefly, or with ε-prediction (whose x̂_0 error is σ/α times its ε error), is least reliable
exactly there; :func:`difflab.samplers.sample` with ``gaussian_start`` lets the Gaussian carry the noise from t_max
to the noise level σ̃ = σ/α given, and the network take over below it.

Images have too many pixels to keep Σ whole (D² numbers), so the Gaussian is stored as probabilistic PCA (Tipping &
Bishop 1999, "Probabilistic principal component analysis", JRSS B 61, Eq. 7): the ``rank`` leading eigenpairs of Σ
and one variance, the mean of the remaining eigenvalues, for every other direction; with ``rank`` = D it is Σ
exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DifflabError

Tensor = torch.Tensor
#: the file a run or an exported model keeps its data Gaussian in
FILE = "gaussian.safetensors"
#: leading eigenpairs kept (MNIST's 784 pixels keep all of them)
RANK = 1024


@dataclass
class DataGaussian:
    """N(``mean``, ``basis`` diag(``variances``) ``basis``ᵀ + ``rest`` (I − ``basis`` ``basis``ᵀ)) over examples of
    ``shape``, in the model's coordinates; float64."""

    mean: Tensor        # (D,)
    basis: Tensor       # (D, k), orthonormal columns
    variances: Tensor   # (k,), >= 0
    rest: float         # the variance of each direction outside the basis
    shape: tuple

    @classmethod
    def fit(cls, data: Tensor, rank: int = RANK) -> "DataGaussian":
        """The Gaussian of ``data`` (N, *shape): its mean and the ``rank`` leading eigenpairs of its covariance (the
        unbiased one), the rest's mean eigenvalue for the other directions."""
        if not isinstance(data, Tensor) or data.ndim < 2 or data.shape[0] < 2:
            raise DifflabError(f"a data Gaussian is fitted to at least 2 examples (N, ...), got shape "
                               f"{tuple(getattr(data, 'shape', ()))}.")
        x = data.reshape(data.shape[0], -1).to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise DifflabError("the data to fit a Gaussian to holds NaN or infinite values.")
        d = x.shape[1]
        mean = x.mean(0)
        centred = x - mean
        cov = centred.T @ centred / (x.shape[0] - 1)
        lam, vec = torch.linalg.eigh(cov)  # ascending
        lam, vec = lam.flip(0).clamp(min=0), vec.flip(1)
        k = min(rank, d)
        rest = float(lam[k:].mean()) if k < d else 0.0
        return cls(mean, vec[:, :k].contiguous(), lam[:k].contiguous(), rest, tuple(data.shape[1:]))

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def _split(self, x: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
        """(x − α μ) as (its coordinates in the basis, its part outside the basis), flattened, float64."""
        if tuple(x.shape[1:]) != self.shape:
            raise DifflabError(f"the data Gaussian is over examples of shape {self.shape}, got {tuple(x.shape[1:])}.")
        d = x.reshape(x.shape[0], -1).to(torch.float64) - alpha * self.mean
        coords = d @ self.basis
        return d, coords, d - coords @ self.basis.T

    def posterior_mean(self, x_t: Tensor, alpha: float, sigma: float) -> Tensor:
        """E[x_0 | x_t] for x_t = α x_0 + σ ε: μ + U diag(α λ / (α² λ + σ²)) Uᵀ (x_t − α μ), and the same gain with
        the rest variance outside the basis; in x_t's dtype and shape."""
        _, coords, outside = self._split(x_t, alpha)
        gain = alpha * self.variances / (alpha**2 * self.variances + sigma**2)
        gain_rest = alpha * self.rest / (alpha**2 * self.rest + sigma**2)
        x0 = self.mean + (coords * gain) @ self.basis.T + gain_rest * outside
        return x0.to(x_t.dtype).reshape(x_t.shape)

    def flow(self, x: Tensor, alpha_sigma_from: tuple[float, float], alpha_sigma_to: tuple[float, float]) -> Tensor:
        """The probability-flow ODE's map from (α_t, σ_t) to (α_s, σ_s): x_s = α_s μ + U diag(√((α_s² λ + σ_s²) /
        (α_t² λ + σ_t²))) Uᵀ (x_t − α_t μ), the rest's ratio outside the basis; in x's dtype and shape."""
        (a0, s0), (a1, s1) = alpha_sigma_from, alpha_sigma_to
        _, coords, outside = self._split(x, a0)
        ratio = torch.sqrt((a1**2 * self.variances + s1**2) / (a0**2 * self.variances + s0**2))
        ratio_rest = ((a1**2 * self.rest + s1**2) / (a0**2 * self.rest + s0**2)) ** 0.5
        y = a1 * self.mean + (coords * ratio) @ self.basis.T + ratio_rest * outside
        return y.to(x.dtype).reshape(x.shape)

    def denoiser(self, schedule) -> "GaussianDenoiser":
        """The exact denoiser of this Gaussian under ``schedule`` (a denoiser every sampler takes)."""
        return GaussianDenoiser(self, schedule)

    # ------------------------------------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the Gaussian as safetensors (float32 tensors, the rest variance and shape in the metadata),
        atomically."""
        from safetensors.torch import save_file

        from .io import atomic_path

        tensors = {"mean": self.mean.float().contiguous(), "basis": self.basis.float().contiguous(),
                   "variances": self.variances.float().contiguous()}
        meta = {"rest": repr(float(self.rest)), "shape": json.dumps(list(self.shape)), "format": "difflab-gaussian-1"}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "DataGaussian":
        """Read a :meth:`save` file; a file that is not one is refused in one sentence."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k).to(torch.float64) for k in ("mean", "basis", "variances")}
            shape, rest = tuple(json.loads(meta["shape"])), float(meta["rest"])
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
            raise DifflabError(f"{str(path)!r} is not a difflab data Gaussian ({type(e).__name__}: {e}).") from None
        d, k = tensors["basis"].shape if tensors["basis"].ndim == 2 else (-1, -1)
        if tensors["mean"].shape != (d,) or tensors["variances"].shape != (k,) or d != _numel(shape):
            raise DifflabError(f"{str(path)!r}: the data Gaussian's tensors do not fit together (mean "
                               f"{tuple(tensors['mean'].shape)}, basis {tuple(tensors['basis'].shape)}, variances "
                               f"{tuple(tensors['variances'].shape)}, examples of shape {shape}).")
        return cls(tensors["mean"], tensors["basis"], tensors["variances"], rest, shape)


class GaussianDenoiser:
    """ε̂ and x̂_0 of a :class:`DataGaussian` at (x_t, t): x̂_0 = :meth:`DataGaussian.posterior_mean`, ε̂ = (x_t − α x̂_0)/σ."""

    def __init__(self, gaussian: DataGaussian, schedule):
        self.gaussian, self.schedule = gaussian, schedule

    def __call__(self, x_t: Tensor, t):
        from .denoiser import Prediction

        tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        if tt.numel() != 1 and not bool((tt == tt[0]).all()):
            raise DifflabError("the Gaussian denoiser takes one time for the whole batch.")
        a, s = float(self.schedule.alpha(tt[:1])[0]), float(self.schedule.sigma(tt[:1])[0])
        x0 = self.gaussian.posterior_mean(x_t, a, s)
        return Prediction(eps=(x_t - a * x0) / s, x0=x0)


def _numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
