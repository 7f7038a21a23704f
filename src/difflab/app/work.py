"""What the app's buttons do, as compositions of the library: sample with guidance, inpaint, SDEdit, compare samplers
× steps, and draw a toy's score field. No math lives here; each function reports to its :class:`~difflab.app.jobs.Job`
after every network evaluation (progress, the preview of x_t and x̂_0, and Stop).
"""

from __future__ import annotations

import base64
import io
import math
import time

import torch

from .. import samplers
from ..errors import DifflabError
from .params import png_with_params, tile_params

#: previews are re-encoded at most this often (seconds), so a fast sampler is not slowed by PNG encoding
PREVIEW_EVERY = 0.15


class Watched:
    """A denoiser that reports every evaluation: ``on_call(x_t, t, prediction)`` (which may raise to stop)."""

    def __init__(self, inner, on_call):
        self.inner, self.schedule, self._on_call = inner, inner.schedule, on_call
        self.calls = 0

    def __call__(self, x_t, t):
        pred = self.inner(x_t, t)
        self.calls += 1
        self._on_call(x_t, t, pred)
        return pred

    def __getattr__(self, name):
        return getattr(self.inner, name)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def grid_png(images: torch.Tensor, columns: int | None = None) -> bytes:
    """Images (N, C, H, W) in [0, 1] as one PNG grid with 1-pixel gaps."""
    from PIL import Image

    n, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + 1) - 1, cols * (w + 1) - 1) * 0.5
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[:, r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = img
    pixels = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def _watcher(run, job, limit: int = 16):
    """``on_call`` for a job: count the evaluation (stopping here if asked) and refresh the preview of x_t and x̂_0."""
    last = [0.0]

    def on_call(x_t, t, pred):
        job.step()
        now = time.monotonic()
        if run.codec is not None or now - last[0] < PREVIEW_EVERY:
            return
        last[0] = now
        x, x0 = run.normalization.to_data(x_t[:limit].float().cpu()), run.normalization.to_data(pred.x0[:limit].float().cpu())
        job.show(x_t=data_url(grid_png(x)), x0=data_url(grid_png(x0)), t=float(torch.as_tensor(t).flatten()[0]))
    return on_call


def expected_calls(sampler: str, steps: int) -> int:
    return math.ceil(steps * samplers.info(sampler)["nfe_per_step"]) + 1


def _denoiser(run, p: dict, num: int, classifier=None):
    """The guided denoiser a request asks for: classifier-free guidance, classifier guidance with ``classifier`` (a
    loaded :class:`~difflab.saved.ClassifierRun`; Algorithm 1 of Dhariwal & Nichol with ``ddpm``, Algorithm 2 with
    the others), or the conditional / unconditional model."""
    from ..guidance import conditional_denoiser

    guidance = None if p["guidance"] == "none" else p["guidance"]
    network = classifier.model if guidance == "classifier" else None
    return conditional_denoiser(run.denoiser, num, p["classes"] or None, guidance, p["scale"], p["compose"],
                                classifier=network, ancestral=p["sampler"] == "ddpm")


def _options(p: dict) -> dict:
    """The sampler's own options a request sets: DDIM's η, Heun's S_churn (EDM's stochastic churn)."""
    if p["sampler"] == "ddim":
        return {"eta": p["eta"]}
    if p["sampler"] == "heun" and p.get("churn"):
        return {"s_churn": p["churn"]}
    return {}


def _sample(run, p: dict, job, classifier=None) -> tuple[torch.Tensor, int]:
    """Samples in data coordinates, sample i from its own generator seeded ``seed + i``; (images, NFE)."""
    num, seed = p["num"], p["seed"]
    watched = Watched(_denoiser(run, p, num, classifier), _watcher(run, job))
    gens = [torch.Generator().manual_seed(seed + i) for i in range(num)]
    options = _options(p)
    shape = run.shape if run.codec is None else run.codec.shape
    with torch.no_grad():
        x = samplers.sample(watched, (num, *shape), sampler=p["sampler"], steps=p["steps"], generator=gens,
                            discretization=p["discretization"], **options)
        if run.codec is not None:
            x = run.codec.decode(x)
    return run.normalization.to_data(x.float().cpu()), watched.calls


def generate(run, p: dict, job, classifier=None) -> dict:
    """``num`` images; tile i carries the parameters that reproduce it alone (:func:`~difflab.app.params.tile_params`)."""
    t0 = time.monotonic()
    images, nfe = _sample(run, p, job, classifier)
    tiles = [png_with_params(img, tile_params(p, i)) for i, img in enumerate(images)]
    return {"tiles": tiles, "seeds": [p["seed"] + i for i in range(len(tiles))], "nfe": nfe,
            "seconds": round(time.monotonic() - t0, 2), "params": p}


def to_model_image(run, img) -> torch.Tensor:
    """A PIL image as the model's (1, C, H, W) data-coordinate tensor: converted to its channels, resized to its size."""
    import numpy as np
    from PIL import Image

    c, h, w = run.shape
    img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).reshape(h, w, -1)).permute(2, 0, 1) / 255
    return x[None]


def to_mask(run, img) -> torch.Tensor:
    """The painted region of a mask image (pixels the brush touched: opaque and bright) as difflab's mask at the
    model's size, 1 = keep, 0 = regenerate (a model pixel is regenerated when any of its area was painted)."""
    import numpy as np
    from PIL import Image

    _, h, w = run.shape
    rgba = np.asarray(img.convert("RGBA"))
    painted = (rgba[..., 3] > 127) & (rgba[..., :3].mean(-1) > 127)
    small = np.asarray(Image.fromarray(painted.astype(np.uint8) * 255).resize((w, h), Image.BOX))
    hole = torch.from_numpy(small > 0)
    if not bool(hole.any()):
        raise DifflabError("the mask is empty: paint the region to regenerate with the brush.")
    return (~hole).float()[None, None]


def edit(run, p: dict, image, mask, job, classifier=None) -> dict:
    """Inpaint (``p["task"]`` = inpaint: replacement or RePaint in the painted region) or SDEdit (strength) ``num``
    times from one input; returns the input, the mask, and the results side by side."""
    from ..tasks import inpaint, sdedit

    t0 = time.monotonic()
    x = to_model_image(run, image)
    num = p["num"]
    guide = run.normalization.to_model(x).expand(num, *x.shape[1:]).contiguous()
    watched = Watched(_denoiser(run, p, num, classifier), _watcher(run, job))
    gen = torch.Generator().manual_seed(p["seed"])
    with torch.no_grad():
        if p["task"] == "inpaint":
            m = inpaint.check_mask(to_mask(run, mask), guide)
            out = inpaint.inpaint(watched, guide, m, method=p["method"], sampler=p["sampler"], steps=p["steps"],
                                  generator=gen, **_options(p))
            out = inpaint.paste(run.normalization.to_data(out), x.expand_as(out), m)
            rgb = x.expand(-1, 3, -1, -1)  # the mask shown in red, also on a grayscale model
            shown = torch.cat([rgb, rgb * m[:1] + (1 - m[:1]) * torch.tensor([1.0, 0.25, 0.25])[None, :, None, None]])
        else:
            out = run.normalization.to_data(sdedit.sdedit(watched, guide, p["strength"], sampler=p["sampler"],
                                                          steps=p["steps"], generator=gen, **_options(p)))
            shown = x
    out = out.float()
    side = torch.cat([shown, out.expand(-1, shown.shape[1], -1, -1)])
    return {"tiles": [png_with_params(img, {**p, "output": i}) for i, img in enumerate(out)],
            "grid": grid_png(side, columns=side.shape[0]), "nfe": watched.calls,
            "seconds": round(time.monotonic() - t0, 2), "params": p}


def compare(run, p: dict, names: list[str], step_counts: list[int], job, classifier=None) -> dict:
    """An X/Y grid: rows the samplers, columns the step counts, each cell ``num`` images from the same seeds,
    labelled with its network evaluations and seconds."""
    from PIL import Image, ImageDraw

    cells, labels = [], []
    for name in names:
        row = []
        for steps in step_counts:
            q = {**p, "sampler": name, "steps": steps, "eta": p["eta"] if name == "ddim" else 0.0}
            t0 = time.monotonic()
            images, nfe = _sample(run, q, job, classifier)
            row.append((images, nfe, time.monotonic() - t0))
        cells.append(row)
    scale = max(1, 56 // run.shape[-1])
    tiles = [[Image.open(io.BytesIO(grid_png(images, columns=len(images)))) for images, _, _ in row] for row in cells]
    tw, th = tiles[0][0].width * scale, tiles[0][0].height * scale
    left, top, pad = 110, 22, 26
    canvas = Image.new("RGB", (left + len(step_counts) * (tw + 8), top + len(names) * (th + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, steps in enumerate(step_counts):
        draw.text((left + j * (tw + 8), 4), f"{steps} steps", fill="black")
    for i, name in enumerate(names):
        y = top + i * (th + pad)
        draw.text((4, y + th // 2 - 6), name, fill="black")
        for j, (tile, (_, nfe, secs)) in enumerate(zip(tiles[i], cells[i])):
            x = left + j * (tw + 8)
            canvas.paste(tile.convert("RGB").resize((tw, th), Image.NEAREST), (x, y))
            draw.text((x, y + th + 3), f"NFE {nfe} · {secs:.2f} s", fill="black")
            labels.append({"sampler": name, "steps": step_counts[j], "nfe": nfe, "seconds": round(secs, 3)})
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return {"grid": buf.getvalue(), "cells": labels, "params": p}


def toy_field(model, t_fraction: float, points: int = 600, arrows: int = 17) -> bytes:
    """A picture of a 2-D model at noise level t = ``t_fraction`` · T: samples noised to t (dots) and the score
    ∇ log p_t = −ε̂/σ_t on a grid (arrows, their lengths normalised). ``model``: a loaded toy run, or a
    :class:`~difflab.toy.GaussianMixture` (the exact oracle)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..toy import GaussianMixture

    if isinstance(model, GaussianMixture):
        from .. import schedules

        schedule = schedules.get("linear", 1000)
        denoiser, shift, scale = model.denoiser(schedule), torch.zeros(2, dtype=torch.float64), 1.0
        x0 = model.sample(points, torch.Generator().manual_seed(0))
    else:
        denoiser, schedule = model.denoiser, model.schedule
        shift = torch.tensor(model.normalization.shift, dtype=torch.float64)
        scale = model.normalization.scale
        x0 = model.normalization.to_model(model.sample(points, sampler="ddim", steps=50,
                                                       generator=torch.Generator().manual_seed(0)).double())
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)
    t = t_min + t_fraction * (t_max - t_min)
    a, s = float(schedule.alpha(torch.tensor(t, dtype=torch.float64))), float(schedule.sigma(torch.tensor(t, dtype=torch.float64)))
    noisy = a * x0 + s * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    data = noisy * scale + shift
    # a view that stays put as t moves: the data's range and the prior's ±3 (model coordinates), in data coordinates
    reach = torch.maximum(x0.abs().max(0).values, torch.full((2,), 3.0, dtype=torch.float64)) * 1.1
    lo, hi = -reach * scale + shift, reach * scale + shift
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), arrows, dtype=torch.float64),
                            torch.linspace(float(lo[1]), float(hi[1]), arrows, dtype=torch.float64), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    z = ((grid - shift) / scale).float()
    with torch.no_grad():
        eps = denoiser(z, torch.full((z.shape[0],), t, dtype=torch.float64)).eps.double()
    score = -eps / s
    length = score.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = score / length
    fig, ax = plt.subplots(figsize=(5, 5), dpi=90)
    ax.scatter(data[:, 0], data[:, 1], s=3, alpha=0.5, color="tab:blue")
    ax.quiver(grid[:, 0], grid[:, 1], u[:, 0], u[:, 1], length.squeeze(1).log(), cmap="viridis", angles="xy",
              scale=arrows * 1.4, width=0.004)
    ax.set_title(f"t = {t:.0f} of {t_max:.0f}   (α = {a:.2f}, σ = {s:.2f})" if t_max > 1 else
                 f"t = {t:.3f}   (α = {a:.2f}, σ = {s:.2f})", fontsize=10)
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(lo[1]), float(hi[1]))
    ax.set_aspect("equal")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
