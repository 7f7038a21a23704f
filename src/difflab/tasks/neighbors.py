"""Each sample beside its nearest training images, in pixels and in the judge's features, and a memorization rate.

Ho et al. 2020 (Figs. 11–12) show CIFAR10 and CelebA samples next to their nearest training images to argue the
model does not copy; :func:`find` does the same for any image run, and :func:`difflab.metrics.memorization
.memorization_rate` turns the distances into a rate with its held-out floor. The training images are exactly the
ones the run trained on (its config's data section: dataset, ``num``, size, channels), the held-out images the
dataset's test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import DifflabError
from ..metrics.memorization import RATIO, Memorization, memorization_rate, nearest

Tensor = torch.Tensor


@dataclass
class Space:
    """One distance: ``distances`` / ``indices`` (N, k) of each sample's nearest training images, and the rate."""

    name: str
    distances: Tensor
    indices: Tensor
    memorization: Memorization


@dataclass
class Neighbors:
    samples: Tensor
    train: Tensor
    num_heldout: int
    spaces: list[Space] = field(default_factory=list)

    def summary(self) -> dict:
        return {"num_samples": len(self.samples), "num_train": len(self.train), "num_heldout": self.num_heldout,
                "ratio": RATIO, **{s.name: {"memorization_rate": s.memorization.rate, "heldout_floor": s.memorization.floor,
                                            "threshold": s.memorization.threshold,
                                            "heldout_median_distance": s.memorization.heldout_median,
                                            "median_nearest_distance": float(s.distances[:, 0].median()),
                                            "memorized": [int(i) for i in torch.nonzero(s.memorization.memorized).flatten()]}
                                   for s in self.spaces}}


def _data(run, split: str) -> Tensor:
    from ..data import load_dataset

    d = run.config.get("data") or {}
    if not d.get("name"):
        raise DifflabError("this model does not record the data it was trained on, so its nearest training images "
                           "cannot be found; neighbours need a difflab run or export.")
    num = d.get("num") if split == "train" else None
    return load_dataset(d["name"], root=d.get("root"), image_size=d.get("image_size"), channels=d.get("channels"),
                        num=num, split=split, seed=run.config.get("seed", 0)).data


def check(run) -> None:
    """Refuse, before sampling, a run whose training images cannot be read back."""
    if run.kind != "image":
        raise DifflabError("neighbours compare images; this run models 2-D points.")
    _data(run, "train")[:1]


def feature_spaces(run):
    """(name, function images -> rows) for the distances: pixels always; the dataset judge's 128-d features when
    one is shipped for this dataset and shape."""
    from ..metrics.classifiers import JUDGE_DATASETS, load_judge

    spaces = [("pixels", lambda x: x.flatten(1))]
    name = run.config["data"]["name"]
    if name in JUDGE_DATASETS:
        judge = load_judge(name)
        if tuple(judge.input_shape) == tuple(run.shape):
            def features(x, judge=judge):
                with torch.no_grad():
                    return torch.cat([judge.features(x[i:i + 500].float()) for i in range(0, len(x), 500)])
            spaces.append((f"{name}-classifier features", features))
    return spaces


def find(run, num: int, k: int = 3, sampler: str | None = None, steps: int | None = None, seed: int = 0,
         batch_size: int = 500, progress: bool = True, samples: Tensor | None = None) -> Neighbors:
    """Draw ``num`` samples (sample i from its own seed, as ``difflab sample``) — or take ``samples`` — and find each
    one's ``k`` nearest training images in every space of :func:`feature_spaces`, with the memorization rate."""
    from ..random import per_sample_generators

    check(run)
    train, heldout = _data(run, "train"), _data(run, "test")
    if k > len(train):
        raise DifflabError(f"k = {k} neighbours asked for, but the run trained on {len(train)} images.")
    if samples is None:
        chunks = []
        for lo in range(0, num, batch_size):
            n = min(batch_size, num - lo)
            chunks.append(run.sample(n, sampler=sampler, steps=steps, progress=progress,
                                     generator=per_sample_generators(seed, lo, n, num)))
        samples = torch.cat(chunks)
    out = Neighbors(samples, train, len(heldout))
    for name, f in feature_spaces(run):
        pool = f(train)
        d, i = nearest(f(samples), pool, k)
        d_heldout, _ = nearest(f(heldout), pool, 1)
        out.spaces.append(Space(name, d, i, memorization_rate(d[:, 0], d_heldout[:, 0])))
    return out


def figure(result: Neighbors, path, rows: int = 12) -> None:
    """Rows of: the sample, then its k nearest training images in each space (pixels first), copied ones marked."""
    from ..plotting import plot_process_images

    n = min(rows, len(result.samples))
    grid, labels = [], []
    for r in range(n):
        line = [result.samples[r]]
        for s in result.spaces:
            line += [result.train[j] for j in s.indices[r].tolist()]
        grid.append(line)
        flags = [s.name.split()[0] for s in result.spaces if bool(s.memorization.memorized[r])]
        labels.append(f"{r}" + (f" (copy: {', '.join(flags)})" if flags else ""))
    k = result.spaces[0].indices.shape[1]
    cols = ["sample"] + [f"{s.name.split()[0]} #{j + 1}" for s in result.spaces for j in range(k)]
    rates = "\n".join(f"{s.name}: {s.memorization.rate:.1%} of {len(result.samples)} samples copy a training image "
                       f"(held-out real images: {s.memorization.floor:.1%})" for s in result.spaces)
    plot_process_images(grid, labels, cols, path, title=f"each sample and its {k} nearest training images\n{rates}")
