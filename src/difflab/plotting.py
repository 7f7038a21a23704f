"""Every picture difflab draws: image grids, toy scatters, schedules, loss curves, GIFs.

matplotlib and PIL are imported inside the functions, so ``import difflab`` stays fast. Figures
are built with the object-oriented ``matplotlib.figure.Figure`` API and rendered by the Agg
canvas: no pyplot, no global figure registry, no GUI backend needed, and a notebook user's
backend is never switched. Every file goes through :func:`difflab.io.atomic_path`, so a reader
never sees a half-written picture and a failed save leaves the previous file untouched.

Inputs may be numpy arrays, torch tensors (anything with ``.detach()``) or nested lists. Every
``save_*`` / ``plot_*`` function returns the :class:`~pathlib.Path` it wrote.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from difflab.errors import DifflabError
from difflab.io import atomic_path

if TYPE_CHECKING:
    import torch

__all__ = [
    "image_grid",
    "save_image_grid",
    "save_scatter",
    "plot_schedules",
    "plot_loss_curve",
    "plot_loss_curves_from_csv",
    "plot_vlb_terms",
    "plot_process_toy",
    "plot_process_images",
    "save_gif",
]

#: Width in pixels that automatic upscaling of image grids aims for (at least).
TARGET_WIDTH_PX = 512
_DPI = 110


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _to_numpy(x: Any, dtype=np.float64) -> np.ndarray:
    """Convert a tensor / array / list to a numpy array of ``dtype`` (no torch import needed)."""
    if hasattr(x, "detach"):  # a torch.Tensor, without importing torch
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        try:
            x = x.numpy()
        except TypeError:  # bfloat16 has no numpy dtype
            x = x.float().numpy()
    elif isinstance(x, (list, tuple)) and x and hasattr(x[0], "detach"):
        x = np.stack([_to_numpy(e, dtype) for e in x])
    return np.asarray(x, dtype=dtype)


def _points(x: Any, name: str) -> np.ndarray:
    p = _to_numpy(x)
    if p.ndim != 2 or p.shape[1] != 2:
        raise DifflabError(f"{name} must be an array of 2-D points with shape (N, 2), got shape {p.shape}.")
    return p


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def _save_figure(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, bbox_inches="tight")
    return path


def _auto_lim(arrays: Sequence[np.ndarray], margin: float = 0.05) -> tuple[float, float]:
    """One (lo, hi) range covering every finite coordinate of ``arrays`` plus a margin."""
    vals = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return -1.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(lo), 1.0)
    return lo - margin * span, hi + margin * span


def _parse_lim(lim) -> tuple[float, float] | None:
    if lim is None:
        return None
    if np.isscalar(lim):
        v = abs(float(lim))
        return -v, v
    lo, hi = (float(v) for v in lim)
    if not lo < hi:
        raise DifflabError(f"lim must be a positive number or a pair (lo, hi) with lo < hi, got {lim!r}.")
    return lo, hi


def _marker_size(n: int) -> float:
    """Marker area in points^2: small for many points, a little larger for few."""
    return float(np.clip(400.0 / max(n, 1) ** 0.5, 0.5, 12.0))


def _scatter_panel(ax, pts: np.ndarray, ref: np.ndarray | None, lim: tuple[float, float]) -> None:
    if ref is not None:
        ax.scatter(ref[:, 0], ref[:, 1], s=_marker_size(len(ref)), c="0.6", alpha=0.25,
                   linewidths=0, zorder=1, rasterized=True)
    ax.scatter(pts[:, 0], pts[:, 1], s=_marker_size(len(pts)), c="C0", alpha=0.7,
               linewidths=0, zorder=2, rasterized=True)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def _default_scale(width: int) -> int:
    return max(1, math.ceil(TARGET_WIDTH_PX / max(width, 1)))


def _upscale(img: np.ndarray, scale: int | None) -> np.ndarray:
    if scale is None:
        scale = _default_scale(img.shape[1])
    if int(scale) != scale or scale < 1:
        raise DifflabError(f"scale must be a positive integer, got {scale!r}.")
    scale = int(scale)
    if scale == 1:
        return img
    return img.repeat(scale, axis=0).repeat(scale, axis=1)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _moving_average(y: np.ndarray, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average with decay ``1 - 2 / (span + 1)``.

    The pandas ``ewm(span=...)`` / TensorBoard convention: m_i = b m_{i-1} + (1 - b) y_i and
    out_i = m_i / (1 - b^(i+1)), so the first value is y_0 and no early outlier makes the curve
    jump when it leaves a window (as a boxcar mean does).
    """
    b = 1.0 - 2.0 / (span + 1.0)
    out = np.empty(y.size)
    m, corr = 0.0, 1.0
    for i, v in enumerate(y.tolist()):
        m = b * m + (1.0 - b) * v
        corr *= b
        out[i] = m / (1.0 - corr) if corr < 1.0 else v
    return out


# --------------------------------------------------------------------------------------------
# image grids
# --------------------------------------------------------------------------------------------


def image_grid(images, nrow: int | None = None, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one uint8 picture.

    ``images`` has shape (N, C, H, W) with C in {1, 3} and values in [0, 1] (values outside are
    clipped, NaN becomes 0). ``nrow`` is the number of images per row, as in torchvision
    (default ``ceil(sqrt(N))``); rows are filled left to right, top to bottom, and unused cells
    are ``pad_value``. Every image is surrounded by ``padding`` pixels of ``pad_value``, so the
    result is ``(rows * (H + padding) + padding, nrow * (W + padding) + padding)`` pixels, with a
    trailing channel axis of 3 for RGB and none for grayscale.
    """
    x = _to_numpy(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DifflabError(
            f"images must have shape (N, C, H, W) with C = 1 or 3, got shape {x.shape}."
        )
    n, c, h, w = x.shape
    if n == 0:
        raise DifflabError("images must contain at least one image, got an empty batch.")
    if padding < 0:
        raise DifflabError(f"padding must be >= 0, got {padding}.")
    ncol = int(nrow) if nrow is not None else math.ceil(math.sqrt(n))
    if ncol < 1:
        raise DifflabError(f"nrow must be a positive integer, got {nrow!r}.")
    ncol = min(ncol, n)
    nrows = math.ceil(n / ncol)
    p = int(padding)
    grid = np.full((c, nrows * (h + p) + p, ncol * (w + p) + p), float(pad_value), dtype=np.float64)
    for k in range(n):
        r, q = divmod(k, ncol)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[:, top:top + h, left:left + w] = x[k]
    out = _to_uint8(grid)
    return out[0] if c == 1 else np.ascontiguousarray(out.transpose(1, 2, 0))


def save_image_grid(images, path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Save ``image_grid(images, nrow)`` as a PNG, upscaled by the integer ``scale``.

    Upscaling is nearest-neighbour, so every source pixel becomes a crisp ``scale`` x ``scale``
    block. The default scale is the smallest integer making the picture at least 512 px wide
    (1 for grids already that wide), so a batch of 8x8 digits is visible.
    """
    from PIL import Image

    grid = _upscale(image_grid(images, nrow=nrow), scale)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return path


def save_gif(frames: list, path, duration_ms: int = 80, scale: int | None = None, levels: int = 256) -> Path:
    """Save ``frames`` (uint8 grids from :func:`image_grid`, all one shape) as a looping GIF.

    Float frames are taken as [0, 1] and converted. ``scale`` upscales as in
    :func:`save_image_grid` (default: at least 512 px wide). ``levels`` < 256 rounds every value to that
    many evenly spaced grey levels (per channel): noisy frames, which LZW cannot compress, shrink about
    2x at 16 levels. Pillow merges consecutive identical frames into one longer frame.
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 256:
        raise DifflabError(f"levels must be an integer from 2 to 256, got {levels!r}.")
    from PIL import Image

    if len(frames) == 0:
        raise DifflabError("frames must contain at least one frame, got none.")
    arrays = []
    for i, f in enumerate(frames):
        a = np.asarray(f) if not hasattr(f, "detach") else _to_numpy(f)
        if a.dtype != np.uint8:
            a = _to_uint8(a.astype(np.float64))
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise DifflabError(
                f"frames[{i}] must be a grid of shape (H, W) or (H, W, 3), got shape {a.shape}."
            )
        if arrays and a.shape != arrays[0].shape:
            raise DifflabError(
                f"frames must all have one shape; frames[0] is {arrays[0].shape}, frames[{i}] is {a.shape}."
            )
        if levels < 256:
            step = 255 / (levels - 1)
            a = np.round(np.round(a / step) * step).astype(np.uint8)
        arrays.append(a)
    s = _default_scale(arrays[0].shape[1]) if scale is None else scale
    imgs = [Image.fromarray(_upscale(a, s)) for a in arrays]
    path = Path(path)
    with atomic_path(path) as tmp:
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:],
                     duration=int(duration_ms), loop=0)
    return path


# --------------------------------------------------------------------------------------------
# 2-D toys
# --------------------------------------------------------------------------------------------


def save_scatter(points, path, title: str | None = None, reference=None, lim=None) -> Path:
    """Scatter 2-D samples (N, 2) with equal aspect; ``reference`` points drawn faintly behind.

    ``lim`` is a number L (axes [-L, L]) or a pair (lo, hi); default: fit all finite points.
    """
    pts = _points(points, "points")
    ref = None if reference is None else _points(reference, "reference")
    lims = _parse_lim(lim) or _auto_lim([pts] + ([ref] if ref is not None else []))
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    _scatter_panel(ax, pts, ref, lims)
    if title:
        ax.set_title(title)
    return _save_figure(fig, path)


def plot_process_toy(frames: list, labels: list[str], path, title: str | None = None,
                     reference=None, lim=None, ncols: int | None = None) -> Path:
    """One scatter panel per frame (e.g. x_t at several t), ``ncols`` to a row (default: all in one
    row), all with the same limits."""
    if len(frames) == 0:
        raise DifflabError("frames must contain at least one (N, 2) array, got none.")
    if len(labels) != len(frames):
        raise DifflabError(f"labels must have one entry per frame: {len(frames)} frames, {len(labels)} labels.")
    pts = [_points(f, f"frames[{i}]") for i, f in enumerate(frames)]
    ref = None if reference is None else _points(reference, "reference")
    lims = _parse_lim(lim) or _auto_lim(pts + ([ref] if ref is not None else []))
    k = len(pts)
    cols = min(k, ncols or k)
    rows = -(-k // cols)
    fig = _figure(2.6 * cols, 2.9 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, p, lab in zip(axes, pts, labels):
        _scatter_panel(ax, p, ref, lims)
        ax.set_title(str(lab), fontsize=9)
    for ax in axes[k:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# schedules and losses
# --------------------------------------------------------------------------------------------


def plot_schedules(curves: dict[str, Any], path, title: str = "ᾱ_t over t/T") -> Path:
    """Plot alpha-bar_t over t/T (left) and the log-SNR log(ᾱ/(1-ᾱ)) over t/T (right).

    ``curves`` maps a name to an alpha-bar array of length T+1 indexed by t = 0..T
    (alpha_bar[0] = 1). The log-SNR panel skips t = 0, where it is infinite.
    """
    if not curves:
        raise DifflabError("curves must map at least one schedule name to an alpha_bar array, got none.")
    fig = _figure(10, 4)
    ax_a, ax_l = fig.subplots(1, 2)
    for name, ab in curves.items():
        a = _to_numpy(ab).reshape(-1)
        if a.size < 2:
            raise DifflabError(f"curves[{name!r}] must be an alpha_bar array of length T+1 >= 2, got {a.size} values.")
        t = np.arange(a.size) / (a.size - 1)
        ax_a.plot(t, a, label=str(name))
        with np.errstate(divide="ignore", invalid="ignore"):
            lsnr = np.log(a[1:]) - np.log1p(-a[1:])
        ax_l.plot(t[1:], np.where(np.isfinite(lsnr), lsnr, np.nan), label=str(name))
    ax_a.set_xlabel("t / T")
    ax_a.set_ylabel("ᾱ_t")
    ax_a.set_title(title)
    ax_a.set_xlim(0, 1)
    ax_a.set_ylim(-0.02, 1.02)
    ax_l.set_xlabel("t / T")
    ax_l.set_ylabel("log-SNR  log(ᾱ/(1-ᾱ))")
    ax_l.set_title("log-SNR over t/T")
    ax_l.set_xlim(0, 1)
    for ax in (ax_a, ax_l):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save_figure(fig, path)


def _draw_loss(ax, steps: np.ndarray, losses: np.ndarray, smooth: int, color: str, label: str | None,
               raw: bool = True) -> None:
    keep = np.isfinite(steps) & np.isfinite(losses)
    s, y = steps[keep], losses[keep]
    if raw:
        ax.plot(s, y, color=color, alpha=0.25, linewidth=0.7)
    # Cap the span at a quarter of the series, so a sparse column (say a validation loss
    # logged every 100 steps) is still smoothed locally rather than into one running mean.
    w = max(1, min(int(smooth), y.size // 4))
    if y.size:
        what = f"EMA, span {w}"
        ax.plot(s, _moving_average(y, w), color=color, linewidth=1.8,
                label=label if w == 1 else f"{label} ({what})" if label else what)


def _loss_axes(ax, all_losses: Sequence[np.ndarray], title: str | None) -> None:
    vals = np.concatenate([v[np.isfinite(v)] for v in all_losses]) if all_losses else np.zeros(0)
    if vals.size and np.all(vals > 0):
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 1.3, not 1.3 × 10⁰
        ax.yaxis.set_major_formatter(plain)
        # within one decade the minor ticks are the only labels; over several they would crowd the axis
        ax.yaxis.set_minor_formatter(plain if vals.max() / vals.min() < 10 else NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_loss_curve(steps, losses, path, title: str | None = None, smooth: int = 50) -> Path:
    """Raw loss (faint) and its exponential moving average with span ``smooth`` steps (bold).

    The average is bias-corrected, so it starts at the first loss, and its span is capped at a
    quarter of the series. The y axis is logarithmic when every finite loss is positive; non-finite values are skipped.
    """
    s = _to_numpy(steps).reshape(-1)
    y = _to_numpy(losses).reshape(-1)
    if s.shape != y.shape:
        raise DifflabError(f"steps and losses must have the same length, got {s.size} and {y.size}.")
    if smooth < 1:
        raise DifflabError(f"smooth must be a positive integer, got {smooth!r}.")
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    _draw_loss(ax, s, y, smooth, "C0", None)
    _loss_axes(ax, [y], title)
    return _save_figure(fig, path)


def plot_loss_curves_from_csv(csv_path, path, title: str | None = None, smooth: int = 50) -> Path:
    """Plot the loss curve(s) of a training log CSV whose header has ``step`` and ``loss``.

    Every other column whose name contains ``loss`` (e.g. ``val_loss``, ``loss_vlb``) is drawn
    too; empty cells (a value logged only every few steps) are skipped.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as e:
        raise DifflabError(f"Could not read loss CSV {os.fspath(csv_path)!r}: {e.strerror or e}.") from e
    if "step" not in fields or "loss" not in fields:
        raise DifflabError(
            f"Loss CSV {os.fspath(csv_path)!r} must have a header with 'step' and 'loss' columns, got {fields}."
        )
    raw_names = reader.fieldnames or []
    name_of = {c.strip(): c for c in raw_names}
    loss_cols = ["loss"] + [c for c in fields if "loss" in c.lower() and c != "loss"]

    def column(name: str) -> np.ndarray:
        out = np.full(len(rows), np.nan)
        for i, r in enumerate(rows):
            v = (r.get(name_of[name]) or "").strip()
            if v:
                try:
                    out[i] = float(v)
                except ValueError as e:
                    raise DifflabError(
                        f"Loss CSV {os.fspath(csv_path)!r} has a non-numeric {name!r} value {v!r} in data row {i + 1}."
                    ) from e
        return out

    steps = column("step")
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    ys = []
    for k, col in enumerate(loss_cols):
        y = column(col)
        ys.append(y)
        _draw_loss(ax, steps, y, smooth, f"C{k % 10}", col)
    _loss_axes(ax, ys, title)
    return _save_figure(fig, path)


def plot_vlb_terms(terms, path, title: str | None = None) -> Path:
    """The terms of the variational bound against the timestep, on a log y axis (as in Nichol &
    Dhariwal 2021, Fig. 2): ``terms[t - 1]`` is L_{t-1} in bits/dim, drawn at t = 1..T, so the
    decoder term L_0 sits at t = 1 (marked). Terms that are not positive (the round-off of a KL that
    is zero) cannot be drawn on the log axis and are left out.
    """
    y = _to_numpy(terms).reshape(-1)
    if y.size < 1:
        raise DifflabError("terms must hold at least one term of the bound, got none.")
    t = np.arange(1, y.size + 1)
    shown = np.where(np.isfinite(y) & (y > 0), y, np.nan)
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    ax.plot(t, shown, color="C0", linewidth=1.2, label="L_{t-1}")
    if np.isfinite(shown[0]):
        ax.scatter([1], [shown[0]], color="C3", s=24, zorder=3, label="L_0, the decoder")
    if np.isfinite(shown).any():
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("timestep t (term L_{t-1})")
    ax.set_ylabel("bits/dim")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# image processes
# --------------------------------------------------------------------------------------------


def plot_process_images(rows: list[list], row_labels: list[str] | None, col_labels: list[str] | None,
                        path, title: str | None = None) -> Path:
    """A labelled grid of single images: ``rows[i][j]`` is one image (C, H, W) in [0, 1].

    Row labels go on the left, column labels on top (either may be None). C = 1 is drawn with a
    gray colormap on a fixed [0, 1] range, so contrast is comparable across panels.
    """
    nr = len(rows)
    nc = max((len(r) for r in rows), default=0)
    if nr == 0 or nc == 0:
        raise DifflabError("rows must contain at least one row with at least one image, got none.")
    if row_labels is not None and len(row_labels) != nr:
        raise DifflabError(f"row_labels must have one entry per row: {nr} rows, {len(row_labels)} labels.")
    if col_labels is not None and len(col_labels) != nc:
        raise DifflabError(f"col_labels must have one entry per column: {nc} columns, {len(col_labels)} labels.")
    imgs: list[list[np.ndarray | None]] = []
    for i, row in enumerate(rows):
        out_row: list[np.ndarray | None] = []
        for j in range(nc):
            if j >= len(row) or row[j] is None:
                out_row.append(None)
                continue
            a = _to_numpy(row[j])
            if a.ndim == 2:
                a = a[None]
            if a.ndim != 3 or a.shape[0] not in (1, 3):
                raise DifflabError(f"rows[{i}][{j}] must be one image of shape (C, H, W) with C = 1 or 3, got shape {a.shape}.")
            a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
            out_row.append(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        imgs.append(out_row)
    cell = 1.3
    fig = _figure(cell * nc + (0.8 if row_labels is not None else 0.2), cell * nr + (0.6 if title else 0.3))
    axes = fig.subplots(nr, nc, squeeze=False, gridspec_kw={"wspace": 0.06, "hspace": 0.06})
    for i in range(nr):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            a = imgs[i][j]
            if a is not None:
                if a.ndim == 2:
                    ax.imshow(a, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                else:
                    ax.imshow(a, interpolation="nearest")
            if i == 0 and col_labels is not None:
                ax.set_title(str(col_labels[j]), fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)


#: the most images a .png grid may hold
MAX_GRID = 10_000


def check_grid_size(num: int) -> None:
    """Refuse a grid of more than :data:`MAX_GRID` images: nobody can read it, and it must all sit in memory."""
    if num > MAX_GRID:
        raise DifflabError(f"a grid of {num} images is not a picture anyone can read; write an .npz for more than "
                           f"{MAX_GRID}.")


def save_samples(samples: torch.Tensor, path: str | Path, kind: str, reference: torch.Tensor | None = None) -> Path:
    """Write samples (data coordinates): ``.npz`` gets the array ``samples``; ``.png`` a grid (images)
    or a scatter plot (toys)."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp:
            np.savez(tmp, samples=samples.detach().cpu().numpy().astype(np.float32))
        return path
    if path.suffix == ".png":
        if kind == "image":
            return save_image_grid(samples, path)
        return save_scatter(samples, path, reference=reference)
    raise DifflabError(f"output file {str(path)!r} must end in .png or .npz.")
