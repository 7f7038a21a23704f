"""Timestep samplers for training: uniform, and importance sampling by the loss second moment
(Nichol & Dhariwal 2021, "Improved DDPM", Sec. 3.3).

A sampler draws t in 1..T with probabilities p_t and returns importance weights w_t = 1/(T p_t), so that
mean_batch(w · L) is an unbiased estimate of the uniform average (1/T) Σ_t L_t whatever p is:
E_{t~p}[w_t L_t] = Σ_t p_t L_t / (T p_t) = (1/T) Σ_t L_t.

State is plain tensors (``state_dict`` / ``load_state_dict``), saved with the trainer for exact resume.
Under data-parallel training, call ``update`` on every rank with the losses of the *global* batch, so
that all ranks hold the same state and draw the same distribution.
"""

from __future__ import annotations

import torch

from .errors import DifflabError

Tensor = torch.Tensor


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise DifflabError(f"the number of timesteps T must be a positive integer, got {T!r}.")
    return T


class UniformSampler:
    """t ~ U{1, ..., T} with weights 1 (DDPM Algorithm 1, line 3)."""

    def __init__(self, T: int):
        self.T = _check_T(T)

    def probabilities(self) -> Tensor:
        """p_t for t = 1..T as a float64 tensor of length T (entry t − 1 is p_t)."""
        return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)

    def weights(self, t: Tensor) -> Tensor:
        """Importance weights w_t = 1/(T p_t) for timesteps t in 1..T, float64 (IDDPM Sec. 3.3)."""
        t = torch.as_tensor(t).long().cpu()
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise DifflabError(f"timesteps t must lie in 1..{self.T}, got values from {int(t.min())} to {int(t.max())}.")
        return 1.0 / (self.T * self.probabilities()[t - 1])

    def _is_uniform(self) -> bool:
        return True

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Draw ``batch`` timesteps t ~ p (int64, in 1..T) and their weights 1/(T p_t) (``dtype``).
        While p is uniform the draw is ``torch.randint``, the same stream as
        :func:`difflab.objectives.uniform_timesteps`; otherwise ``torch.multinomial`` with replacement."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise DifflabError(f"batch must be a non-negative integer, got {batch!r}.")
        draw_on = generator.device if generator is not None else "cpu"
        if self._is_uniform():
            t = torch.randint(1, self.T + 1, (batch,), generator=generator, device=draw_on)
        else:
            p = self.probabilities().to(draw_on)
            t = torch.multinomial(p, batch, replacement=True, generator=generator) + 1
        t = t.cpu()
        return t.to(device), self.weights(t).to(device=device, dtype=dtype)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record per-example losses at timesteps t; the uniform sampler keeps nothing."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise DifflabError(f"the uniform timestep sampler has no state, got keys {sorted(state)}.")


class LossSecondMomentSampler(UniformSampler):
    """p_t ∝ √E[L_t²] over the last ``history`` losses seen at each t (IDDPM Sec. 3.3), mixed with a
    uniform share: p_t = (1 − u) √E[L_t²] / Σ_s √E[L_s²] + u/T with u = ``uniform_prob`` (10⁻³, as in the
    IDDPM code), so every t keeps probability ≥ u/T and its weight stays bounded. Until every t has a
    full history (and whenever all recorded losses are zero) p is uniform.

    Feed ``update`` the *unweighted* per-example losses at the drawn t (IDDPM trains L_vlb this way).
    """

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 1e-3):
        super().__init__(T)
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise DifflabError(f"history must be a positive integer, got {history!r}.")
        if isinstance(uniform_prob, bool) or not isinstance(uniform_prob, (int, float)) or not 0 <= uniform_prob <= 1:
            raise DifflabError(f"uniform_prob must be a number in [0, 1], got {uniform_prob!r}.")
        self.history = history
        self.uniform_prob = float(uniform_prob)
        self.loss_history = torch.zeros(self.T, history, dtype=torch.float64)
        self.loss_counts = torch.zeros(self.T, dtype=torch.int64)

    def warmed_up(self) -> bool:
        """Whether every t = 1..T has ``history`` recorded losses."""
        return bool((self.loss_counts == self.history).all())

    def _second_moment_root(self) -> Tensor:
        return self.loss_history.pow(2).mean(1).sqrt()

    def _is_uniform(self) -> bool:
        return not self.warmed_up() or not float(self._second_moment_root().sum()) > 0

    def probabilities(self) -> Tensor:
        """p_t for t = 1..T (entry t − 1), float64: uniform before warm-up, else IDDPM Sec. 3.3's
        √E[L_t²], normalized and mixed with ``uniform_prob`` of the uniform distribution."""
        if self._is_uniform():
            return super().probabilities()
        root = self._second_moment_root()
        return (1.0 - self.uniform_prob) * root / root.sum() + self.uniform_prob / self.T

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Append each loss to its timestep's history, dropping the oldest once ``history`` are kept."""
        t = torch.as_tensor(t).detach().long().cpu().flatten()
        losses = torch.as_tensor(losses).detach().to(device="cpu", dtype=torch.float64).flatten()
        if t.shape != losses.shape:
            raise DifflabError(f"update needs one loss per timestep, got {t.numel()} timesteps and {losses.numel()} losses.")
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise DifflabError(f"timesteps t must lie in 1..{self.T}, got values from {int(t.min())} to {int(t.max())}.")
        if not bool(torch.isfinite(losses).all()):
            raise DifflabError("update got a non-finite loss; the sampler's history accepts finite losses only.")
        for step, loss in zip(t.tolist(), losses.tolist()):
            i, n = step - 1, int(self.loss_counts[step - 1])
            if n == self.history:
                self.loss_history[i, :-1] = self.loss_history[i, 1:].clone()
                self.loss_history[i, -1] = loss
            else:
                self.loss_history[i, n] = loss
                self.loss_counts[i] = n + 1

    def state_dict(self) -> dict[str, Tensor]:
        return {"loss_history": self.loss_history.clone(), "loss_counts": self.loss_counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != {"loss_history", "loss_counts"}:
            raise DifflabError(f"a loss-second-moment sampler state needs keys loss_history and loss_counts, got {sorted(state)}.")
        history, counts = state["loss_history"], state["loss_counts"]
        if tuple(history.shape) != (self.T, self.history) or tuple(counts.shape) != (self.T,):
            raise DifflabError(f"sampler state is for shape {tuple(history.shape)}, expected ({self.T}, {self.history}) "
                               "(T timesteps by history length).")
        if bool(((counts < 0) | (counts > self.history)).any()):
            raise DifflabError(f"sampler state loss_counts must lie in 0..{self.history}.")
        self.loss_history = history.detach().to(device="cpu", dtype=torch.float64).clone()
        self.loss_counts = counts.detach().to(device="cpu", dtype=torch.int64).clone()


SAMPLERS = {"uniform": UniformSampler, "loss-second-moment": LossSecondMomentSampler}


def get(name: str, T: int, **options) -> UniformSampler:
    """A timestep sampler by name: ``uniform`` or ``loss-second-moment``."""
    if name not in SAMPLERS:
        raise DifflabError(f"unknown timestep sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")
    try:
        return SAMPLERS[name](T, **options)
    except TypeError as e:
        raise DifflabError(f"bad options {sorted(options)} for timestep sampler {name!r}: {e}.") from None


__all__ = ["UniformSampler", "LossSecondMomentSampler", "SAMPLERS", "get"]
