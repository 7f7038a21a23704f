"""Tests for difflab.plotting: exact grid layout, and every writer produces a readable, atomic file."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difflab import plotting
from difflab.errors import DifflabError


def _const_images(values, c=1, h=2, w=2):
    return np.stack([np.full((c, h, w), v, dtype=np.float32) for v in values])


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# ------------------------------------------------------------------------------------------
# image_grid
# ------------------------------------------------------------------------------------------


def test_image_grid_layout_matches_hand_built_grid():
    # Four constant 2x2 images, 2 per row, padding 1 of value 1.0 (= 255).
    g = plotting.image_grid(_const_images([0.0, 0.2, 0.6, 1.0]), nrow=2, padding=1, pad_value=1.0)
    P, a, b, c, d = 255, 0, 51, 153, 255  # round(255 * v)
    expected = np.array(
        [
            [P, P, P, P, P, P, P],
            [P, a, a, P, b, b, P],
            [P, a, a, P, b, b, P],
            [P, P, P, P, P, P, P],
            [P, c, c, P, d, d, P],
            [P, c, c, P, d, d, P],
            [P, P, P, P, P, P, P],
        ],
        dtype=np.uint8,
    )
    assert g.dtype == np.uint8
    np.testing.assert_array_equal(g, expected)


def test_image_grid_pad_value_padding_and_empty_cells():
    # 3 images with the default nrow = ceil(sqrt(3)) = 2: two rows, last cell empty (pad value).
    g = plotting.image_grid(_const_images([0.0, 0.0, 0.0], h=3, w=2), padding=2, pad_value=0.5)
    assert g.shape == (2 * (3 + 2) + 2, 2 * (2 + 2) + 2)
    pad = 128  # round(0.5 * 255)
    mask = np.full(g.shape, True)
    for top, left in [(2, 2), (2, 6), (7, 2)]:  # image cells; (7, 6) is the empty one
        mask[top:top + 3, left:left + 2] = False
    assert np.all(g[mask] == pad)
    assert np.all(g[~mask] == 0)
    assert np.all(g[7:10, 6:8] == pad)


def test_image_grid_nrow_is_images_per_row_and_padding_zero():
    x = _const_images([0.0, 1.0, 0.0], h=2, w=3)
    g = plotting.image_grid(x, nrow=3, padding=0)
    assert g.shape == (2, 9)
    np.testing.assert_array_equal(g[:, 3:6], 255)
    np.testing.assert_array_equal(g[:, :3], 0)
    g1 = plotting.image_grid(x, nrow=1, padding=0)
    assert g1.shape == (6, 3)


def test_image_grid_rgb_keeps_channel_order():
    x = np.zeros((2, 3, 2, 2))
    x[0, 0] = 1.0  # red
    x[1, 2] = 0.5  # half blue
    g = plotting.image_grid(x, nrow=2, padding=1, pad_value=0.0)
    assert g.shape == (4, 7, 3)
    np.testing.assert_array_equal(g[1, 1], [255, 0, 0])
    np.testing.assert_array_equal(g[2, 5], [0, 0, 128])
    np.testing.assert_array_equal(g[0, 0], [0, 0, 0])


def test_image_grid_grayscale_is_two_dimensional():
    g = plotting.image_grid(np.zeros((4, 1, 8, 8)))
    assert g.ndim == 2 and g.shape == (19, 19)


def test_image_grid_clips_and_handles_nan():
    x = np.array([-1.0, 2.0, np.nan, 0.5]).reshape(4, 1, 1, 1)
    g = plotting.image_grid(x, nrow=4, padding=0)
    np.testing.assert_array_equal(g, [[0, 255, 0, 128]])


def test_image_grid_accepts_torch_tensors_including_bfloat16():
    t = torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1).requires_grad_()
    np.testing.assert_array_equal(plotting.image_grid(t, nrow=2, padding=0), [[0, 255]])
    b = torch.ones(1, 3, 2, 2, dtype=torch.bfloat16)
    assert np.all(plotting.image_grid(b, padding=0) == 255)


@pytest.mark.parametrize("shape", [(2, 2, 4, 4), (1, 4, 4), (3, 4, 4, 4)])
def test_image_grid_rejects_bad_shapes(shape):
    with pytest.raises(DifflabError, match="images"):
        plotting.image_grid(np.zeros(shape))


def test_moving_average_is_bias_corrected_ema():
    y = np.random.default_rng(1).random(30)
    span = 7
    b = 1 - 2 / (span + 1)
    # Closed form: a weighted mean of y_0..y_i with weights b^(i-k), normalised.
    expected = [np.dot(b ** np.arange(i, -1, -1), y[:i + 1]) / np.sum(b ** np.arange(i + 1)) for i in range(y.size)]
    np.testing.assert_allclose(plotting._moving_average(y, span), expected, rtol=1e-12)
    np.testing.assert_allclose(plotting._moving_average(y, 1), y)  # span 1: no smoothing


# ------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------


def test_save_image_grid_default_scale_and_exact_pixels(tmp_path):
    x = np.random.default_rng(0).random((16, 1, 8, 8))
    p = plotting.save_image_grid(x, tmp_path / "g.png")
    assert p == tmp_path / "g.png"
    grid = plotting.image_grid(x)  # 4 x 4 of 8x8 -> 37 px wide
    with Image.open(p) as im:
        assert im.format == "PNG"
        a = np.asarray(im)
    assert a.shape[1] >= 512 and a.shape[1] % grid.shape[1] == 0
    s = a.shape[1] // grid.shape[1]
    np.testing.assert_array_equal(a, np.kron(grid, np.ones((s, s), dtype=np.uint8)))
    p1 = plotting.save_image_grid(x, tmp_path / "g1.png", scale=1)
    with Image.open(p1) as im:
        np.testing.assert_array_equal(np.asarray(im), grid)
    assert _files(tmp_path) == ["g.png", "g1.png"]


def test_save_image_grid_rgb_explicit_scale(tmp_path):
    x = torch.rand(3, 3, 4, 5)
    p = plotting.save_image_grid(x, tmp_path / "rgb.png", nrow=3, scale=2)
    with Image.open(p) as im:
        assert im.mode == "RGB"
        assert im.size == (2 * (3 * 6 + 1), 2 * (4 + 2))


def test_save_gif_frames_and_loop(tmp_path):
    frames = [plotting.image_grid(np.full((4, 1, 4, 4), v)) for v in (0.0, 0.5, 1.0)]
    p = plotting.save_gif(frames, tmp_path / "a.gif", duration_ms=50)
    with Image.open(p) as im:
        assert im.format == "GIF"
        assert im.n_frames == 3
        assert im.info.get("loop") == 0
        assert im.size[0] >= 512
    assert _files(tmp_path) == ["a.gif"]


def test_save_gif_rgb_and_rejects_mismatched_frames(tmp_path):
    rgb = [plotting.image_grid(np.full((1, 3, 4, 4), v)) for v in (0.0, 1.0)]
    p = plotting.save_gif(rgb, tmp_path / "rgb.gif", scale=1)
    with Image.open(p) as im:
        assert im.n_frames == 2 and im.size == (6, 6)
    with pytest.raises(DifflabError, match="one shape"):
        plotting.save_gif([np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.uint8)], tmp_path / "bad.gif")
    assert not (tmp_path / "bad.gif").exists()
    # levels: every value rounded to that many evenly spaced grey levels
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    plotting.save_gif([ramp, 255 - ramp], tmp_path / "q.gif", scale=1, levels=5)
    with Image.open(tmp_path / "q.gif") as im:
        values = np.unique(np.asarray(im.convert("L")))
    np.testing.assert_array_equal(values, np.round(np.arange(5) * 255 / 4).astype(np.uint8))
    with pytest.raises(DifflabError, match="levels"):
        plotting.save_gif([ramp], tmp_path / "bad.gif", levels=1)


def _toy(n=300, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2))


def _alpha_bar(T=100):
    betas = np.linspace(1e-4, 0.02, T)
    return np.concatenate([[1.0], np.cumprod(1 - betas)])


def _write_csv(p: Path) -> Path:
    lines = ["step,loss,val_loss,lr"]
    for s in range(1, 201):
        val = f"{0.5 / s ** 0.3:.5f}" if s % 20 == 0 else ""
        lines.append(f"{s},{1.0 / s ** 0.5 + 0.01 * (s % 3):.5f},{val},0.001")
    p.write_text("\n".join(lines) + "\n")
    return p


WRITERS = {
    "scatter": lambda out, d: plotting.save_scatter(_toy(), out, title="samples", reference=_toy(seed=1)),
    "scatter_lim": lambda out, d: plotting.save_scatter(torch.randn(50, 2), out, lim=3.0),
    "schedules": lambda out, d: plotting.plot_schedules(
        {"linear": _alpha_bar(), "ends_at_zero": np.linspace(1, 0, 51), "torch": torch.tensor(_alpha_bar(20))}, out),
    "loss": lambda out, d: plotting.plot_loss_curve(np.arange(1, 501), 1 / np.sqrt(np.arange(1, 501)), out, title="L"),
    "loss_negative": lambda out, d: plotting.plot_loss_curve([0, 1, 2], [1.0, -0.5, np.nan], out, smooth=5),
    "loss_csv": lambda out, d: plotting.plot_loss_curves_from_csv(_write_csv(d / "log.csv"), out, title="run"),
    "process_toy": lambda out, d: plotting.plot_process_toy(
        [_toy(), 2 * _toy(seed=2), torch.randn(300, 2)], ["t=0", "t=50", "t=T"], out, title="forward", reference=_toy()),
    "process_images": lambda out, d: plotting.plot_process_images(
        [[np.random.rand(1, 8, 8) for _ in range(4)], [torch.rand(1, 8, 8) for _ in range(4)]],
        ["sample 0", "sample 1"], ["t=T", "t=2T/3", "t=T/3", "t=0"], out, title="reverse"),
    "process_images_rgb": lambda out, d: plotting.plot_process_images(
        [[np.random.rand(3, 6, 6), np.random.rand(3, 6, 6)]], ["x"], None, out),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_matplotlib_writers_produce_readable_png(tmp_path, name):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing glyphs, no log(0) warnings, no tight-layout noise
        p = WRITERS[name](out_dir / f"{name}.png", tmp_path)
    assert p == out_dir / f"{name}.png"
    assert p.stat().st_size > 0
    with Image.open(p) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size[0] > 100 and im.size[1] > 100
        assert np.asarray(im.convert("L")).std() > 0  # not blank
    assert _files(out_dir) == [p.name]


def test_writers_create_missing_directories(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    plotting.save_image_grid(np.zeros((1, 1, 2, 2)), deep / "g.png")
    plotting.save_scatter(_toy(20), deep / "s.png")
    plotting.save_gif([np.zeros((2, 2), np.uint8)], deep / "x" / "a.gif")
    assert _files(deep) == ["g.png", "s.png", "x"]
    assert _files(deep / "x") == ["a.gif"]


def _fail_midway():
    def broken(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a file")
        raise RuntimeError("disk full")
    return broken


def test_failed_pil_save_leaves_previous_file_untouched(tmp_path, monkeypatch):
    p = plotting.save_image_grid(np.zeros((1, 1, 2, 2)), tmp_path / "g.png")
    before = p.read_bytes()
    monkeypatch.setattr(Image.Image, "save", _fail_midway())
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_image_grid(np.ones((4, 1, 8, 8)), p)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_gif([np.zeros((2, 2), np.uint8)], tmp_path / "a.gif")
    assert p.read_bytes() == before
    assert _files(tmp_path) == ["g.png"]


def test_failed_matplotlib_save_leaves_previous_file_untouched(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    p = plotting.save_scatter(_toy(20), tmp_path / "s.png")
    before = p.read_bytes()
    monkeypatch.setattr(Figure, "savefig", _fail_midway())
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_scatter(_toy(30), p, title="new")
    assert p.read_bytes() == before
    assert _files(tmp_path) == ["s.png"]


# ------------------------------------------------------------------------------------------
# bad input and import cost
# ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_one_clear_error(tmp_path):
    with pytest.raises(DifflabError, match=r"points .*\(N, 2\)"):
        plotting.save_scatter(np.zeros((5, 3)), tmp_path / "s.png")
    with pytest.raises(DifflabError, match="labels"):
        plotting.plot_process_toy([_toy(5)], ["a", "b"], tmp_path / "p.png")
    with pytest.raises(DifflabError, match="same length"):
        plotting.plot_loss_curve([1, 2], [1.0], tmp_path / "l.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("iteration,value\n1,2\n")
    with pytest.raises(DifflabError, match="'step' and 'loss'"):
        plotting.plot_loss_curves_from_csv(bad, tmp_path / "c.png")
    with pytest.raises(DifflabError, match=r"rows\[0\]\[1\]"):
        plotting.plot_process_images([[np.zeros((1, 2, 2)), np.zeros((2, 2, 2))]], None, None, tmp_path / "i.png")
    assert _files(tmp_path) == ["bad.csv"]


def test_import_does_not_load_matplotlib_pil_or_torch():
    code = (
        "import sys, difflab.plotting\n"
        "heavy = [m for m in ('matplotlib', 'PIL', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
